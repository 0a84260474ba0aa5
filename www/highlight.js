// pincer — syntax colours for code blocks the server marked with a language (`language-xxx`):
// comments, strings, numbers and keywords, for the languages agents write most. It only wraps
// text the server already rendered in spans it builds itself; it never parses markup, so what a
// message says stays text.

'use strict';

window.PincerHighlight = (() => {
  const words = (s) => new Set(s.split(' '));
  const C_LIKE = 'if else for while do switch case break continue return default goto sizeof typedef struct union enum const static extern void int char long short float double unsigned signed bool true false null';
  const LANGS = {
    js: {
      line: '//', block: true, quotes: '\'"`',
      kw: words('async await break case catch class const continue debugger default delete do else export extends finally for from function if import in instanceof let new of return static super switch this throw try typeof var void while with yield true false null undefined'),
    },
    py: {
      line: '#', quotes: '\'"',
      kw: words('and as assert async await break class continue def del elif else except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield True False None self'),
    },
    rust: {
      line: '//', block: true, quotes: '"',
      kw: words('as async await break const continue crate dyn else enum extern false fn for if impl in let loop match mod move mut pub ref return self Self static struct super trait true type unsafe use where while Some None Ok Err'),
    },
    go: {
      line: '//', block: true, quotes: '"`',
      kw: words('break case chan const continue default defer else fallthrough for func go goto if import interface map package range return select struct switch type var true false nil'),
    },
    c: { line: '//', block: true, quotes: '\'"', kw: words(`${C_LIKE} include define class public private protected new delete this namespace template typename virtual override final import package extends implements throws try catch throw`) },
    sh: {
      line: '#', quotes: '\'"',
      kw: words('if then else elif fi for in do done while until case esac function return local export echo exit set unset cd sudo'),
    },
    sql: {
      line: '--', block: true, quotes: '\'"', caseless: true,
      kw: words('select from where and or not insert into values update set delete create table index view drop alter add join left right inner outer on group by order having limit offset as distinct union all null is in like between case when then else end primary key references begin commit'),
    },
    json: { quotes: '"', kw: words('true false null') },
    yaml: { line: '#', quotes: '\'"', kw: words('true false null yes no on off') },
  };
  const ALIASES = {
    javascript: 'js', ts: 'js', typescript: 'js', jsx: 'js', tsx: 'js', mjs: 'js', node: 'js',
    python: 'py', python3: 'py', rs: 'rust', golang: 'go', cpp: 'c', 'c++': 'c', h: 'c', java: 'c',
    kotlin: 'c', csharp: 'c', cs: 'c', swift: 'c', bash: 'sh', shell: 'sh', zsh: 'sh', console: 'sh',
    sqlite: 'sql', postgres: 'sql', postgresql: 'sql', mysql: 'sql', yml: 'yaml', toml: 'yaml', ini: 'yaml',
  };

  function langOf(code) {
    const m = /(?:^|\s)language-([\w+#-]+)/.exec(code.className || '');
    if (!m) return null;
    const name = m[1].toLowerCase();
    return LANGS[ALIASES[name] || name] || null;
  }

  /** Splits source text into [class, text] runs; class '' is plain. */
  function tokens(src, lang) {
    const out = [];
    let plain = '';
    const flush = () => { if (plain) out.push(['', plain]); plain = ''; };
    const push = (cls, text) => { flush(); out.push([cls, text]); };
    let i = 0;
    while (i < src.length) {
      const ch = src[i];
      if (lang.line && src.startsWith(lang.line, i)) {
        const end = src.indexOf('\n', i);
        const stop = end < 0 ? src.length : end;
        push('hl-comment', src.slice(i, stop));
        i = stop;
      } else if (lang.block && src.startsWith('/*', i)) {
        const end = src.indexOf('*/', i + 2);
        const stop = end < 0 ? src.length : end + 2;
        push('hl-comment', src.slice(i, stop));
        i = stop;
      } else if (lang.quotes.includes(ch)) {
        let j = i + 1;
        while (j < src.length && src[j] !== ch && !(src[j] === '\n' && ch !== '`')) j += src[j] === '\\' ? 2 : 1;
        const stop = Math.min(j + 1, src.length);
        push('hl-string', src.slice(i, stop));
        i = stop;
      } else if (/[0-9]/.test(ch) && !/[\w$]/.test(src[i - 1] || '')) {
        const m = /^(0x[0-9a-fA-F_]+|[0-9][0-9_]*(\.[0-9_]+)?([eE][+-]?[0-9]+)?)/.exec(src.slice(i, i + 64));
        push('hl-number', m[0]);
        i += m[0].length;
      } else if (/[A-Za-z_$]/.test(ch)) {
        const m = /^[A-Za-z_$][\w$]*/.exec(src.slice(i, i + 128));
        const word = m[0];
        if (lang.kw.has(lang.caseless ? word.toLowerCase() : word)) push('hl-keyword', word);
        else plain += word;
        i += word.length;
      } else {
        plain += ch;
        i += 1;
      }
    }
    flush();
    return out;
  }

  /** Colours every `pre > code.language-xxx` under `root` once. */
  function highlight(root) {
    for (const code of root.querySelectorAll('pre > code[class*="language-"]')) {
      if (code.dataset.hl) continue;
      code.dataset.hl = '1';
      const lang = langOf(code);
      const src = code.textContent;
      if (!lang || src.length > 100000) continue;
      const frag = document.createDocumentFragment();
      for (const [cls, text] of tokens(src, lang)) {
        if (!cls) {
          frag.append(document.createTextNode(text));
        } else {
          const span = document.createElement('span');
          span.className = cls;
          span.textContent = text;
          frag.append(span);
        }
      }
      code.replaceChildren(frag);
    }
  }

  return { highlight, tokens, langOf };
})();
