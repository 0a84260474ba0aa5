//! File tools: `read_file`, `write_file`, `edit_file` and `list_files`.
//!
//! Every path goes through [`resolve`], the one place that decides whether a path is inside the
//! agent's folder (or the extra mounts): symlinks are resolved before the check, `..` is only
//! allowed where it can be resolved on disk, and writes never go through a symlink. Writes are
//! atomic (a temporary file in the same directory, then a rename).

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::{Roots, Tool, ToolCtx, ToolOutput, opt_str_arg, str_arg};
use crate::agent::model::ToolSpec;

/// Lines `read_file` shows when the call gives no `limit`.
pub const READ_DEFAULT_LIMIT: u64 = 2000;
/// Longer lines are cut (in characters).
pub const READ_MAX_LINE_CHARS: usize = 2000;
/// Cap on what one `read_file` call returns.
pub const READ_MAX_OUTPUT_BYTES: usize = 256 * 1024;
/// After the requested lines, `read_file` keeps counting lines only this far into the file.
pub const READ_MAX_SCAN_BYTES: u64 = 256 * 1024 * 1024;
/// Largest `content` `write_file` accepts.
pub const WRITE_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Largest file `edit_file` works on (before and after the edit).
pub const EDIT_MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// How deep `list_files` descends when recursive (top-level entries are depth 1).
pub const LIST_MAX_DEPTH: usize = 8;
/// Most entries one `list_files` call shows.
pub const LIST_MAX_ENTRIES: usize = 1000;
/// Directories a recursive listing shows but does not expand.
const LIST_NOT_EXPANDED: &[&str] = &[".git", "node_modules"];

/// What a resolved path will be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    /// Creating or replacing: the final component must not be a symlink.
    Write,
}

/// Turns a path the model gave into a canonical path inside the agent's folder or the extra
/// mounts, or an error telling the model what to use instead.
///
/// Relative paths resolve against `roots.agent`. The deepest existing ancestor is canonicalised
/// (symlinks resolved) and must be inside a root's canonical path; the components that do not
/// exist yet may not contain `..` (they cannot be checked on disk) and may not be dangling
/// symlinks. For [`Access::Write`] the path itself may not be a symlink. A root that does not
/// exist allows nothing.
pub fn resolve(roots: &Roots, path: &str, access: Access) -> Result<PathBuf, ToolOutput> {
    let hint = root_hint(roots);
    if path.trim().is_empty() {
        return Err(ToolOutput::error(format!(
            "`path` is empty; give a path relative to the agent's folder (like notes/todo.md) or {hint}"
        )));
    }
    if path.contains('\0') {
        return Err(ToolOutput::error(format!("`path` contains a NUL byte; give a plain path ({hint})")));
    }
    let allowed: Vec<PathBuf> =
        [&roots.agent, &roots.extra].iter().filter_map(|r| fs::canonicalize(r).ok()).collect();
    if allowed.is_empty() {
        return Err(ToolOutput::error(format!(
            "the agent's folder {} does not exist, so no file can be used",
            roots.agent.display()
        )));
    }
    let given = Path::new(path);
    let joined = if given.is_absolute() { given.to_path_buf() } else { roots.agent.join(given) };

    // Walk up to the deepest ancestor that canonicalises; collect what is left (in reverse).
    let mut base = joined.clone();
    let mut rest: Vec<OsString> = Vec::new();
    let canonical = loop {
        if let Ok(c) = fs::canonicalize(&base) {
            break c;
        }
        match base.components().next_back() {
            Some(Component::Normal(name)) => {
                rest.push(name.to_os_string());
                base.pop();
            }
            Some(Component::ParentDir) => {
                return Err(ToolOutput::error(format!(
                    "`{path}` uses `..` after a part that does not exist, so it cannot be checked; \
                     give a plain path ({hint})"
                )));
            }
            Some(Component::CurDir) => {
                base.pop();
            }
            _ => return Err(ToolOutput::error(format!("`{path}` cannot be resolved; use {hint}"))),
        }
    };
    if !allowed.iter().any(|root| canonical.starts_with(root)) {
        let mut shown = canonical.clone();
        shown.extend(rest.iter().rev());
        return Err(outside(path, &shown, &hint));
    }
    let mut resolved = canonical;
    for name in rest.iter().rev() {
        resolved.push(name);
        // It did not canonicalise, so if it exists at all it is a dangling or looping symlink (or
        // unreadable): never create or follow anything through it.
        if fs::symlink_metadata(&resolved).is_ok() {
            return Err(ToolOutput::error(format!(
                "`{path}` goes through {}, a symbolic link that points nowhere (or an entry that cannot be \
                 read); use another path ({hint})",
                resolved.display()
            )));
        }
    }
    if access == Access::Write && is_symlink(&joined) {
        let target =
            fs::canonicalize(&joined).map(|t| t.display().to_string()).unwrap_or_else(|_| "nowhere".into());
        return Err(ToolOutput::error(format!(
            "`{path}` is a symbolic link (to {target}); files are not written through links, write to \
             the real path instead ({hint})"
        )));
    }
    Ok(resolved)
}

fn outside(path: &str, resolved: &Path, hint: &str) -> ToolOutput {
    ToolOutput::error(format!(
        "`{path}` is outside the agent's folder (it resolves to {}); use {hint}",
        resolved.display()
    ))
}

fn root_hint(roots: &Roots) -> String {
    if roots.extra.is_dir() {
        format!("a path under {} or {}", roots.agent.display(), roots.extra.display())
    } else {
        format!("a path under {}", roots.agent.display())
    }
}

fn is_symlink(path: &Path) -> bool {
    fs::symlink_metadata(path).map(|m| m.file_type().is_symlink()).unwrap_or(false)
}

/// An optional whole-number argument: a JSON number (integral) or a string of digits.
pub(crate) fn opt_uint_arg(input: &Value, name: &str) -> Result<Option<u64>, ToolOutput> {
    let bad = || ToolOutput::error(format!("argument `{name}` must be a whole number (0 or more)"));
    match input.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64 => Ok(Some(f as u64)),
            _ => Err(bad()),
        },
        Some(Value::String(s)) => s.trim().parse::<u64>().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

/// An optional boolean argument (`true`/`false`, also as strings).
pub(crate) fn opt_bool_arg(input: &Value, name: &str) -> Result<Option<bool>, ToolOutput> {
    match input.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(ToolOutput::error(format!("argument `{name}` must be true or false"))),
    }
}

/// A path for the tool chip, cut to ~120 chars.
fn path_summary(input: &Value, default: &str) -> String {
    let p = input.get("path").and_then(Value::as_str).unwrap_or(default);
    cut_chars(p, 120)
}

pub(crate) fn cut_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn io_error(what: &str, path: &Path, e: &io::Error) -> ToolOutput {
    let hint = match e.kind() {
        io::ErrorKind::NotFound => "; check the path with list_files",
        io::ErrorKind::PermissionDenied => "; the file's permissions do not allow it",
        _ => "",
    };
    ToolOutput::error(format!("could not {what} {}: {e}{hint}", path.display()))
}

/// Writes `data` to `target` atomically: a new temporary file in the same directory (created
/// exclusively, so never through a link), flushed, then renamed over the target (a rename replaces
/// a link rather than following it). An existing file's permissions are kept.
pub(crate) fn write_atomic(target: &Path, data: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = target.parent().ok_or_else(|| io::Error::other("the path has no parent directory"))?;
    let name: String =
        target.file_name().map(|n| n.to_string_lossy().chars().take(64).collect()).unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.pincer-tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    let result = fill_and_rename(&mut file, &tmp, target, data);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn fill_and_rename(file: &mut File, tmp: &Path, target: &Path, data: &[u8]) -> io::Result<()> {
    file.write_all(data)?;
    if let Ok(meta) = fs::symlink_metadata(target) {
        if meta.file_type().is_symlink() {
            return Err(io::Error::other("the path became a symbolic link; not writing through it"));
        }
        if meta.is_file() {
            file.set_permissions(meta.permissions())?;
        }
    }
    file.sync_all()?;
    fs::rename(tmp, target)
}

fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

// ---------------------------------------------------------------------------------------------
// read_file

pub struct ReadFile;

/// Collects the numbered lines of a window of the file while counting all its lines.
struct LineWindow {
    first: u64,
    last: u64,
    lineno: u64,
    /// Bytes of the current line kept (enough for the shown characters).
    line: Vec<u8>,
    /// Full byte length of the current line.
    line_len: usize,
    out: String,
    shown_last: u64,
    cut_by_size: bool,
}

const LINE_KEEP_BYTES: usize = READ_MAX_LINE_CHARS * 4 + 4;

impl LineWindow {
    fn push(&mut self, bytes: &[u8]) {
        self.line_len += bytes.len();
        let in_window = self.lineno + 1 >= self.first && self.lineno < self.last && !self.cut_by_size;
        if in_window && self.line.len() < LINE_KEEP_BYTES {
            let room = LINE_KEEP_BYTES - self.line.len();
            self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
    }

    fn end_line(&mut self) {
        self.lineno += 1;
        if self.lineno >= self.first && self.lineno <= self.last && !self.cut_by_size {
            let mut bytes = &self.line[..];
            if bytes.last() == Some(&b'\r') && self.line_len == bytes.len() {
                bytes = &bytes[..bytes.len() - 1];
            }
            let text = String::from_utf8_lossy(bytes);
            let mut line = match text.char_indices().nth(READ_MAX_LINE_CHARS) {
                Some((i, _)) => format!("{}… [line cut: {} bytes in all]", &text[..i], self.line_len),
                None if self.line_len > self.line.len() => {
                    format!("{text}… [line cut: {} bytes in all]", self.line_len)
                }
                None => text.into_owned(),
            };
            line = format!("{:>6}\t{line}\n", self.lineno);
            if self.out.len() + line.len() > READ_MAX_OUTPUT_BYTES {
                self.cut_by_size = true;
            } else {
                self.out.push_str(&line);
                self.shown_last = self.lineno;
            }
        }
        self.line.clear();
        self.line_len = 0;
    }

    fn window_done(&self) -> bool {
        self.cut_by_size || self.lineno >= self.last
    }
}

impl Tool for ReadFile {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "read_file".into(),
            description: format!(
                "Read a text file. Lines come numbered like `cat -n` (the number, a tab, the line). \
                 Relative paths are inside your folder /workspace/agent. Shows {READ_DEFAULT_LIMIT} lines \
                 from `offset` unless `limit` says otherwise; lines over {READ_MAX_LINE_CHARS} characters \
                 are cut and one call returns at most {} KiB — read long files in parts with offset/limit. \
                 Binary files and directories are refused (use list_files for directories).",
                READ_MAX_OUTPUT_BYTES / 1024
            ),
            input_schema: json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "File to read: relative to /workspace/agent, or absolute under /workspace/agent."},
                    "offset": {"type": "integer", "minimum": 1, "description": "First line to show (1-based). Default 1."},
                    "limit": {"type": "integer", "minimum": 1, "description": format!("How many lines to show. Default {READ_DEFAULT_LIMIT}.")}
                },
                "required": ["path"],
                "additionalProperties": false
            }),
        }
    }

    fn summary(&self, input: &Value) -> String {
        path_summary(input, "")
    }

    fn run(&self, input: &Value, ctx: &mut ToolCtx<'_>) -> ToolOutput {
        match read_file(input, ctx.roots) {
            Ok(out) | Err(out) => out,
        }
    }
}

fn read_file(input: &Value, roots: &Roots) -> Result<ToolOutput, ToolOutput> {
    let path = str_arg(input, "path")?;
    let offset = opt_uint_arg(input, "offset")?.unwrap_or(1).max(1);
    let limit = opt_uint_arg(input, "limit")?.unwrap_or(READ_DEFAULT_LIMIT);
    if limit == 0 {
        return Err(ToolOutput::error("`limit` must be at least 1 (or left out for the default)"));
    }
    let resolved = resolve(roots, path, Access::Read)?;
    let meta = fs::metadata(&resolved).map_err(|e| io_error("read", &resolved, &e))?;
    if meta.is_dir() {
        return Err(ToolOutput::error(format!(
            "{} is a directory, not a file; use list_files to see what it contains",
            resolved.display()
        )));
    }
    if !meta.is_file() {
        return Err(ToolOutput::error(format!(
            "{} is not a regular file (a device, pipe or socket); read_file only reads files",
            resolved.display()
        )));
    }
    let file = File::open(&resolved).map_err(|e| io_error("open", &resolved, &e))?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut w = LineWindow {
        first: offset,
        last: offset.saturating_add(limit - 1),
        lineno: 0,
        line: Vec::new(),
        line_len: 0,
        out: String::new(),
        shown_last: 0,
        cut_by_size: false,
    };
    let mut scanned: u64 = 0;
    let mut counted_all = true;
    loop {
        let buf = reader.fill_buf().map_err(|e| io_error("read", &resolved, &e))?;
        if buf.is_empty() {
            break;
        }
        if buf.contains(&0) {
            return Err(ToolOutput::error(format!(
                "{} looks like a binary file (it contains NUL bytes); read_file only shows text — \
                 use bash (e.g. `file`, `xxd | head`) to inspect it",
                resolved.display()
            )));
        }
        let n = buf.len();
        let mut rest = buf;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            w.push(&rest[..pos]);
            w.end_line();
            rest = &rest[pos + 1..];
        }
        w.push(rest);
        reader.consume(n);
        scanned += n as u64;
        if w.window_done() && scanned > READ_MAX_SCAN_BYTES {
            counted_all = false;
            break;
        }
    }
    if counted_all && w.line_len > 0 {
        w.end_line();
    }
    let total = w.lineno;
    let display = resolved.display();
    if total == 0 && counted_all {
        return Ok(ToolOutput::ok(format!("{display} is empty (0 lines)")));
    }
    if offset > total && counted_all {
        return Err(ToolOutput::error(format!(
            "offset {offset} is past the end of {display}, which has {total} lines"
        )));
    }
    let mut out = w.out;
    let total_text = if counted_all {
        format!("{total}")
    } else {
        format!("more than {total} (the file is {}; not all counted)", human_size(meta.len()))
    };
    let shown_last = w.shown_last;
    if w.cut_by_size {
        out.push_str(&format!(
            "[output cut at {} KiB after line {shown_last}; the file has {total_text} lines; \
             use offset={} to read on]",
            READ_MAX_OUTPUT_BYTES / 1024,
            shown_last + 1
        ));
    } else if shown_last < total || !counted_all {
        out.push_str(&format!(
            "[showing lines {offset}–{shown_last} of {total_text}; use offset={} to read on]",
            shown_last + 1
        ));
    } else if offset > 1 {
        out.push_str(&format!("[showing lines {offset}–{shown_last} of {total_text}]"));
    }
    Ok(ToolOutput::ok(out))
}

// ---------------------------------------------------------------------------------------------
// write_file

pub struct WriteFile;

impl Tool for WriteFile {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "write_file".into(),
            description: format!(
                "Create a file or replace its whole content. Relative paths are inside your folder \
                 /workspace/agent; missing parent directories are created. The write is atomic (readers \
                 see the old or the new content, never half). At most {} MiB. To change part of an \
                 existing file, use edit_file instead.",
                WRITE_MAX_BYTES / (1024 * 1024)
            ),
            input_schema: json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "File to write: relative to /workspace/agent, or absolute under /workspace/agent."},
                    "content": {"type": "string", "description": "The complete new content of the file."}
                },
                "required": ["path", "content"],
                "additionalProperties": false
            }),
        }
    }

    fn summary(&self, input: &Value) -> String {
        path_summary(input, "")
    }

    fn run(&self, input: &Value, ctx: &mut ToolCtx<'_>) -> ToolOutput {
        match write_file(input, ctx.roots) {
            Ok(out) | Err(out) => out,
        }
    }
}

fn write_file(input: &Value, roots: &Roots) -> Result<ToolOutput, ToolOutput> {
    let path = str_arg(input, "path")?;
    let content = str_arg(input, "content")?;
    if content.len() > WRITE_MAX_BYTES {
        return Err(ToolOutput::error(format!(
            "content is {} bytes; write_file takes at most {} MiB — write the file in smaller pieces \
             (e.g. several files) or generate it with bash",
            content.len(),
            WRITE_MAX_BYTES / (1024 * 1024)
        )));
    }
    let resolved = resolve(roots, path, Access::Write)?;
    let previous = match fs::metadata(&resolved) {
        Ok(m) if m.is_dir() => {
            return Err(ToolOutput::error(format!(
                "{} is a directory; give a file path inside it",
                resolved.display()
            )));
        }
        Ok(m) if !m.is_file() => {
            return Err(ToolOutput::error(format!(
                "{} is not a regular file (a device, pipe or socket); it cannot be written",
                resolved.display()
            )));
        }
        Ok(m) => Some(m.len()),
        Err(_) => None,
    };
    if let Some(parent) = resolved.parent() {
        fs::create_dir_all(parent).map_err(|e| io_error("create the directory", parent, &e))?;
    }
    write_atomic(&resolved, content.as_bytes()).map_err(|e| io_error("write", &resolved, &e))?;
    let what = match previous {
        Some(old) => format!("replaced the previous {old} bytes"),
        None => "new file".to_string(),
    };
    Ok(ToolOutput::ok(format!("wrote {} bytes to {} ({what})", content.len(), resolved.display())))
}

// ---------------------------------------------------------------------------------------------
// edit_file

pub struct EditFile;

impl Tool for EditFile {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "edit_file".into(),
            description: "Replace exact text in a text file. `old_string` must match the file exactly \
                 (including whitespace and indentation) and occur exactly once, unless `replace_all` is \
                 true; include a few surrounding lines to make it unique. Read the file first. To create \
                 a file or rewrite it completely, use write_file."
                .into(),
            input_schema: json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "File to edit: relative to /workspace/agent, or absolute under /workspace/agent."},
                    "old_string": {"type": "string", "description": "The exact text to replace."},
                    "new_string": {"type": "string", "description": "The text to put in its place (may be empty to delete)."},
                    "replace_all": {"type": "boolean", "description": "Replace every occurrence instead of exactly one. Default false."}
                },
                "required": ["path", "old_string", "new_string"],
                "additionalProperties": false
            }),
        }
    }

    fn summary(&self, input: &Value) -> String {
        path_summary(input, "")
    }

    fn run(&self, input: &Value, ctx: &mut ToolCtx<'_>) -> ToolOutput {
        match edit_file(input, ctx.roots) {
            Ok(out) | Err(out) => out,
        }
    }
}

fn edit_file(input: &Value, roots: &Roots) -> Result<ToolOutput, ToolOutput> {
    let path = str_arg(input, "path")?;
    let old = str_arg(input, "old_string")?;
    let new = str_arg(input, "new_string")?;
    let replace_all = opt_bool_arg(input, "replace_all")?.unwrap_or(false);
    if old.is_empty() {
        return Err(ToolOutput::error(
            "`old_string` is empty; give the exact text to replace (use write_file to create a file)",
        ));
    }
    if old == new {
        return Err(ToolOutput::error(
            "`old_string` and `new_string` are the same, so there is nothing to change",
        ));
    }
    let resolved = resolve(roots, path, Access::Write)?;
    let meta = fs::metadata(&resolved).map_err(|e| io_error("edit", &resolved, &e))?;
    if meta.is_dir() {
        return Err(ToolOutput::error(format!("{} is a directory, not a file", resolved.display())));
    }
    if !meta.is_file() {
        return Err(ToolOutput::error(format!("{} is not a regular file", resolved.display())));
    }
    if meta.len() > EDIT_MAX_FILE_BYTES {
        return Err(ToolOutput::error(format!(
            "{} is {}; edit_file works on files up to {} MiB — use bash (e.g. sed) for this one",
            resolved.display(),
            human_size(meta.len()),
            EDIT_MAX_FILE_BYTES / (1024 * 1024)
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    File::open(&resolved)
        .and_then(|f| f.take(EDIT_MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| io_error("read", &resolved, &e))?;
    if bytes.contains(&0) {
        return Err(ToolOutput::error(format!(
            "{} looks like a binary file (it contains NUL bytes); edit_file only edits text",
            resolved.display()
        )));
    }
    let content = String::from_utf8(bytes).map_err(|_| {
        ToolOutput::error(format!(
            "{} is not valid UTF-8 text; edit_file cannot edit it safely — use bash instead",
            resolved.display()
        ))
    })?;
    let count = content.matches(old).count();
    if count == 0 {
        let crlf = if content.contains("\r\n") && old.contains('\n') && !old.contains("\r\n") {
            " (the file uses CRLF line endings: include the \\r before each \\n)"
        } else {
            ""
        };
        return Err(ToolOutput::error(format!(
            "`old_string` was not found in {}{crlf}; read the file again and copy the text exactly, \
             including whitespace and indentation",
            resolved.display()
        )));
    }
    if count > 1 && !replace_all {
        return Err(ToolOutput::error(format!(
            "`old_string` occurs {count} times in {}; add surrounding lines to make it unique, or set \
             replace_all to true to replace every occurrence",
            resolved.display()
        )));
    }
    let updated = if replace_all { content.replace(old, new) } else { content.replacen(old, new, 1) };
    if updated.len() as u64 > EDIT_MAX_FILE_BYTES {
        return Err(ToolOutput::error(format!(
            "the edited file would be {}; edit_file keeps files under {} MiB",
            human_size(updated.len() as u64),
            EDIT_MAX_FILE_BYTES / (1024 * 1024)
        )));
    }
    write_atomic(&resolved, updated.as_bytes()).map_err(|e| io_error("write", &resolved, &e))?;
    let plural = if count == 1 { "" } else { "s" };
    Ok(ToolOutput::ok(format!("replaced {count} occurrence{plural} in {}", resolved.display())))
}

// ---------------------------------------------------------------------------------------------
// list_files

pub struct ListFiles;

struct Listing {
    lines: Vec<String>,
    recursive: bool,
    cut: bool,
    depth_cut: bool,
    errors: usize,
}

impl Listing {
    fn walk(&mut self, dir: &Path, prefix: &str, depth: usize) {
        let entries = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) => {
                self.errors += 1;
                self.lines.push(format!("{prefix}  (cannot be listed: {e})"));
                return;
            }
        };
        let mut entries: Vec<(String, fs::DirEntry)> = entries
            .filter_map(Result::ok)
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, entry) in entries {
            if self.lines.len() >= LIST_MAX_ENTRIES {
                self.cut = true;
                return;
            }
            let rel = format!("{prefix}{name}");
            let Ok(file_type) = entry.file_type() else {
                self.lines.push(format!("{rel}  (unreadable)"));
                continue;
            };
            if file_type.is_symlink() {
                let target = fs::read_link(entry.path()).map(|t| t.display().to_string()).unwrap_or_default();
                let marker = if entry.path().is_dir() { "/" } else { "" };
                self.lines.push(format!("{rel}{marker} -> {target}  (symbolic link)"));
            } else if file_type.is_dir() {
                if !self.recursive {
                    self.lines.push(format!("{rel}/"));
                } else if LIST_NOT_EXPANDED.contains(&name.as_str()) {
                    self.lines.push(format!("{rel}/  (not expanded)"));
                } else if depth >= LIST_MAX_DEPTH {
                    self.depth_cut = true;
                    self.lines.push(format!("{rel}/  (deeper levels not shown)"));
                } else {
                    self.lines.push(format!("{rel}/"));
                    self.walk(&entry.path(), &format!("{rel}/"), depth + 1);
                    if self.cut {
                        return;
                    }
                }
            } else if file_type.is_file() {
                let size = entry.metadata().map(|m| human_size(m.len())).unwrap_or_else(|_| "?".into());
                self.lines.push(format!("{rel}  ({size})"));
            } else {
                self.lines.push(format!("{rel}  (special file)"));
            }
        }
    }
}

impl Tool for ListFiles {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "list_files".into(),
            description: format!(
                "List a directory: one entry per line, sorted, directories end with `/`, files show their \
                 size, symbolic links their target. Defaults to your folder /workspace/agent. With \
                 `recursive`, lists subdirectories too (paths relative to the listed directory, at most \
                 {LIST_MAX_DEPTH} levels and {LIST_MAX_ENTRIES} entries; .git and node_modules are not \
                 expanded, symbolic links are not followed)."
            ),
            input_schema: json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "Directory to list: relative to /workspace/agent, or absolute under /workspace/agent. Default: /workspace/agent."},
                    "recursive": {"type": "boolean", "description": "Also list the contents of subdirectories. Default false."}
                },
                "additionalProperties": false
            }),
        }
    }

    fn summary(&self, input: &Value) -> String {
        path_summary(input, ".")
    }

    fn run(&self, input: &Value, ctx: &mut ToolCtx<'_>) -> ToolOutput {
        match list_files(input, ctx.roots) {
            Ok(out) | Err(out) => out,
        }
    }
}

fn list_files(input: &Value, roots: &Roots) -> Result<ToolOutput, ToolOutput> {
    let path = opt_str_arg(input, "path")?.filter(|p| !p.trim().is_empty()).unwrap_or(".");
    let recursive = opt_bool_arg(input, "recursive")?.unwrap_or(false);
    let resolved = resolve(roots, path, Access::Read)?;
    let meta = fs::metadata(&resolved).map_err(|e| io_error("list", &resolved, &e))?;
    if !meta.is_dir() {
        return Err(ToolOutput::error(format!(
            "{} is a file ({}), not a directory; use read_file to read it",
            resolved.display(),
            human_size(meta.len())
        )));
    }
    let mut listing = Listing { lines: Vec::new(), recursive, cut: false, depth_cut: false, errors: 0 };
    listing.walk(&resolved, "", 1);
    let mut out = format!("{}/\n", resolved.display().to_string().trim_end_matches('/'));
    if listing.lines.is_empty() {
        out.push_str("(empty directory)");
    } else {
        out.push_str(&listing.lines.join("\n"));
    }
    if listing.cut {
        out.push_str(&format!(
            "\n[listing cut at {LIST_MAX_ENTRIES} entries; list a subdirectory to see more]"
        ));
    }
    if listing.depth_cut {
        out.push_str(&format!(
            "\n[directories deeper than {LIST_MAX_DEPTH} levels are not expanded; list them directly]"
        ));
    }
    Ok(ToolOutput::ok(out))
}

#[cfg(test)]
pub(crate) mod testkit {
    //! What the tool tests share: a recording [`Actions`] and a one-call runner.

    use super::super::{Action, Actions, Roots, TaskInfo, Tool, ToolCtx, ToolOutput};
    use crate::agent::model::Cancel;
    use serde_json::Value;

    #[derive(Default)]
    pub(crate) struct Recorder {
        pub(crate) calls: Vec<Action>,
    }

    impl Actions for Recorder {
        fn act(&mut self, action: Action) -> Result<String, String> {
            self.calls.push(action);
            Ok(format!("done #{}", self.calls.len()))
        }

        fn destinations(&self) -> Vec<String> {
            vec!["main".into()]
        }

        fn tasks(&self) -> Result<Vec<TaskInfo>, String> {
            Ok(Vec::new())
        }
    }

    /// Runs `tool` once with `cancel`; asserts it sent no actions.
    pub(crate) fn run_with(tool: &dyn Tool, roots: &Roots, cancel: &Cancel, input: Value) -> ToolOutput {
        let mut rec = Recorder::default();
        let out = {
            let mut ctx = ToolCtx { roots, cancel, actions: &mut rec, tz: "UTC" };
            tool.run(&input, &mut ctx)
        };
        assert!(rec.calls.is_empty(), "{:?}", rec.calls);
        out
    }

    pub(crate) fn run(tool: &dyn Tool, roots: &Roots, input: Value) -> ToolOutput {
        run_with(tool, roots, &Cancel::default(), input)
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::run;
    use super::*;
    use std::os::unix::fs::symlink;

    /// A session directory with `agent/` (and `inbound.db`, `secret/` beside it).
    fn session() -> (tempfile::TempDir, Roots) {
        let dir = tempfile::tempdir().unwrap();
        let roots = Roots::new(dir.path().to_path_buf());
        fs::create_dir_all(&roots.agent).unwrap();
        fs::write(dir.path().join("inbound.db"), "DB").unwrap();
        fs::create_dir_all(dir.path().join("secret")).unwrap();
        fs::write(dir.path().join("secret/key"), "KEY").unwrap();
        (dir, roots)
    }

    fn ok(out: ToolOutput) -> String {
        assert!(!out.is_error, "expected success, got: {}", out.content);
        out.content
    }

    fn err(out: ToolOutput) -> String {
        assert!(out.is_error, "expected an error, got: {}", out.content);
        out.content
    }

    #[test]
    fn confinement_table() {
        let (dir, roots) = session();
        let ws = dir.path();
        let agent = &roots.agent;
        fs::create_dir_all(agent.join("sub/deeper")).unwrap();
        fs::write(agent.join("sub/deeper/ok.txt"), "fine\n").unwrap();
        // Escapes planted inside the agent's folder.
        symlink(ws.join("inbound.db"), agent.join("db_link")).unwrap();
        symlink(ws.join("secret"), agent.join("secret_dir")).unwrap();
        symlink("/etc", agent.join("etc_link")).unwrap();
        symlink(ws.join("does-not-exist"), agent.join("dangling")).unwrap();
        symlink(ws.join("nowhere-dir"), agent.join("dangling_dir")).unwrap();
        // A link that stays inside is fine for reading.
        symlink(agent.join("sub/deeper/ok.txt"), agent.join("inner_link")).unwrap();

        let ws_s = ws.display().to_string();
        let escapes: Vec<String> = vec![
            "../inbound.db".into(),
            "../secret/key".into(),
            "sub/../../inbound.db".into(),
            "nope/../../inbound.db".into(),
            "new/../../x.txt".into(),
            "/etc/passwd".into(),
            "/etc/hostname".into(),
            format!("{ws_s}/inbound.db"),
            format!("{ws_s}/agent/../inbound.db"),
            format!("{ws_s}/secret/key"),
            "db_link".into(),
            "secret_dir/key".into(),
            "secret_dir/new.txt".into(),
            "etc_link/passwd".into(),
            "dangling".into(),
            "dangling_dir/file.txt".into(),
            "".into(),
            "a\0b".into(),
        ];
        type Case = (&'static str, Box<dyn Tool>, fn(&str) -> Value);
        let tools: Vec<Case> = vec![
            ("read", Box::new(ReadFile), |p| json!({"path": p})),
            ("write", Box::new(WriteFile), |p| json!({"path": p, "content": "pwned"})),
            ("edit", Box::new(EditFile), |p| json!({"path": p, "old_string": "DB", "new_string": "pwned"})),
            ("list", Box::new(ListFiles), |p| json!({"path": p})),
        ];
        for (name, tool, args) in &tools {
            for p in &escapes {
                if *name == "list" && p.is_empty() {
                    continue; // an empty path lists the agent's folder
                }
                let out = run(tool.as_ref(), &roots, args(p));
                assert!(out.is_error, "{name} {p:?} was allowed: {}", out.content);
                let msg = &out.content;
                assert!(
                    msg.contains("outside the agent's folder")
                        || msg.contains("symbolic link")
                        || msg.contains("`..`")
                        || msg.contains("empty")
                        || msg.contains("NUL"),
                    "{name} {p:?}: unexpected message {msg}"
                );
                if !p.is_empty() && !p.contains('\0') {
                    assert!(msg.contains(&agent.display().to_string()), "{name} {p:?}: no hint: {msg}");
                }
            }
        }
        // Nothing outside was touched.
        assert_eq!(fs::read_to_string(ws.join("inbound.db")).unwrap(), "DB");
        assert_eq!(fs::read_to_string(ws.join("secret/key")).unwrap(), "KEY");
        assert!(!ws.join("secret/new.txt").exists() && !ws.join("x.txt").exists());
        assert!(!ws.join("does-not-exist").exists() && !ws.join("nowhere-dir").exists());

        // Legitimate paths: relative, nested, absolute under the agent's folder, `..` that stays
        // inside, `.`, and a link that points inside (reading).
        let abs = agent.join("sub/deeper/ok.txt").display().to_string();
        for p in [
            "sub/deeper/ok.txt",
            "./sub/deeper/ok.txt",
            "sub/deeper/../deeper/ok.txt",
            abs.as_str(),
            "inner_link",
        ] {
            assert!(ok(run(&ReadFile, &roots, json!({"path": p}))).contains("fine"), "{p}");
        }
        ok(run(&WriteFile, &roots, json!({"path": "sub/new/a.txt", "content": "A"})));
        ok(run(&WriteFile, &roots, json!({"path": format!("{}/abs.txt", agent.display()), "content": "B"})));
        ok(run(&EditFile, &roots, json!({"path": "sub/new/a.txt", "old_string": "A", "new_string": "C"})));
        assert_eq!(fs::read_to_string(agent.join("sub/new/a.txt")).unwrap(), "C");
        assert!(ok(run(&ListFiles, &roots, json!({"path": "sub"}))).contains("deeper/"));
        assert!(ok(run(&ListFiles, &roots, json!({}))).contains("sub/"));
        // Writing through a link, even one that points inside, is refused.
        let msg = err(run(&WriteFile, &roots, json!({"path": "inner_link", "content": "x"})));
        assert!(msg.contains("symbolic link"), "{msg}");
        assert_eq!(fs::read_to_string(agent.join("sub/deeper/ok.txt")).unwrap(), "fine\n");
    }

    #[test]
    fn extra_root_is_allowed_and_missing_roots_allow_nothing() {
        let (dir, roots) = session();
        // No extra mount yet: absolute paths there are refused.
        let extra_file = roots.extra.join("shared.txt");
        err(run(&WriteFile, &roots, json!({"path": extra_file.display().to_string(), "content": "x"})));
        fs::create_dir_all(&roots.extra).unwrap();
        ok(run(&WriteFile, &roots, json!({"path": extra_file.display().to_string(), "content": "x"})));
        assert!(ok(run(&ReadFile, &roots, json!({"path": extra_file.display().to_string()}))).contains("x"));

        let gone = Roots::new(dir.path().join("missing"));
        let msg = err(run(&ReadFile, &gone, json!({"path": "a.txt"})));
        assert!(msg.contains("does not exist"), "{msg}");
    }

    #[test]
    fn read_numbers_lines_with_offset_and_limit() {
        let (_dir, roots) = session();
        let text: String = (1..=10).map(|i| format!("line {i}\n")).collect();
        fs::write(roots.agent.join("ten.txt"), &text).unwrap();
        let out = ok(run(&ReadFile, &roots, json!({"path": "ten.txt"})));
        assert!(out.starts_with("     1\tline 1\n     2\tline 2\n"), "{out}");
        assert!(out.contains("    10\tline 10\n") && !out.contains("["), "{out}");

        let out = ok(run(&ReadFile, &roots, json!({"path": "ten.txt", "offset": 3, "limit": 2})));
        assert!(out.starts_with("     3\tline 3\n     4\tline 4\n"), "{out}");
        assert!(!out.contains("line 5"), "{out}");
        assert!(out.contains("lines 3–4 of 10") && out.contains("offset=5"), "{out}");

        // Numbers as strings are accepted; offset past the end is an error naming the length.
        assert!(ok(run(&ReadFile, &roots, json!({"path": "ten.txt", "offset": "10"}))).contains("line 10"));
        let msg = err(run(&ReadFile, &roots, json!({"path": "ten.txt", "offset": 11})));
        assert!(msg.contains("10 lines"), "{msg}");
        err(run(&ReadFile, &roots, json!({"path": "ten.txt", "limit": 0})));
        err(run(&ReadFile, &roots, json!({"path": "ten.txt", "offset": -1})));

        // No trailing newline, CRLF, empty file.
        fs::write(roots.agent.join("crlf.txt"), "a\r\nb").unwrap();
        assert_eq!(ok(run(&ReadFile, &roots, json!({"path": "crlf.txt"}))), "     1\ta\n     2\tb\n");
        fs::write(roots.agent.join("empty.txt"), "").unwrap();
        assert!(ok(run(&ReadFile, &roots, json!({"path": "empty.txt"}))).contains("empty"));
    }

    #[test]
    fn read_cuts_long_lines_defaults_and_total_size() {
        let (_dir, roots) = session();
        let long = "é".repeat(5000);
        fs::write(roots.agent.join("long.txt"), format!("{long}\nshort\n")).unwrap();
        let out = ok(run(&ReadFile, &roots, json!({"path": "long.txt"})));
        let first = out.lines().next().unwrap();
        assert_eq!(first.matches('é').count(), READ_MAX_LINE_CHARS, "{}", first.len());
        assert!(first.contains("line cut: 10000 bytes"), "{first}");
        assert!(out.contains("     2\tshort"));

        // Default limit: 2000 lines, with the total reported.
        let many: String = (1..=2500).map(|i| format!("{i}\n")).collect();
        fs::write(roots.agent.join("many.txt"), many).unwrap();
        let out = ok(run(&ReadFile, &roots, json!({"path": "many.txt"})));
        assert!(out.contains("  2000\t2000\n") && !out.contains("\t2001\n"));
        assert!(
            out.contains("lines 1–2000 of 2500") && out.contains("offset=2001"),
            "{}",
            &out[out.len() - 200..]
        );

        // Total output cap: 300 lines of 1500 chars each is over 256 KiB.
        let wide: String = (0..300).map(|_| format!("{}\n", "x".repeat(1500))).collect();
        fs::write(roots.agent.join("wide.txt"), wide).unwrap();
        let out = ok(run(&ReadFile, &roots, json!({"path": "wide.txt"})));
        assert!(out.len() <= READ_MAX_OUTPUT_BYTES + 200, "{}", out.len());
        assert!(
            out.contains("output cut at 256 KiB") && out.contains("300 lines"),
            "{}",
            &out[out.len() - 200..]
        );
    }

    #[test]
    fn read_refuses_binary_directories_and_missing_files() {
        let (_dir, roots) = session();
        fs::write(roots.agent.join("bin.dat"), b"\x7fELF\x00\x01\x02").unwrap();
        assert!(err(run(&ReadFile, &roots, json!({"path": "bin.dat"}))).contains("binary"));
        fs::create_dir(roots.agent.join("d")).unwrap();
        assert!(err(run(&ReadFile, &roots, json!({"path": "d"}))).contains("list_files"));
        assert!(err(run(&ReadFile, &roots, json!({"path": "nope.txt"}))).contains("could not read"));
        assert!(err(run(&ReadFile, &roots, json!({}))).contains("`path`"));
    }

    #[test]
    fn write_creates_dirs_atomically_and_has_a_limit() {
        let (_dir, roots) = session();
        let out = ok(run(&WriteFile, &roots, json!({"path": "a/b/c/file.txt", "content": "héllo"})));
        assert!(out.contains("wrote 6 bytes") && out.contains("new file"), "{out}");
        let path = roots.agent.join("a/b/c/file.txt");
        assert_eq!(fs::read_to_string(&path).unwrap(), "héllo");
        // Replacing keeps the permissions and leaves no temporary file behind.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o750)).unwrap();
        let out = ok(run(&WriteFile, &roots, json!({"path": "a/b/c/file.txt", "content": ""})));
        assert!(out.contains("wrote 0 bytes") && out.contains("previous 6 bytes"), "{out}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o750);
        let names: Vec<_> =
            fs::read_dir(roots.agent.join("a/b/c")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![OsString::from("file.txt")]);

        let big = "x".repeat(WRITE_MAX_BYTES + 1);
        assert!(
            err(run(&WriteFile, &roots, json!({"path": "big.txt", "content": big})))
                .contains("at most 4 MiB")
        );
        assert!(!roots.agent.join("big.txt").exists());
        assert!(err(run(&WriteFile, &roots, json!({"path": "a/b", "content": "x"}))).contains("directory"));
        assert!(err(run(&WriteFile, &roots, json!({"path": "x.txt"}))).contains("`content`"));
    }

    #[test]
    fn edit_requires_a_unique_match_unless_replace_all() {
        let (_dir, roots) = session();
        let path = roots.agent.join("code.rs");
        fs::write(&path, "let a = 1;\nlet b = 1;\nlet c = 2;\n").unwrap();
        let msg =
            err(run(&EditFile, &roots, json!({"path": "code.rs", "old_string": "= 1", "new_string": "= 3"})));
        assert!(msg.contains("occurs 2 times") && msg.contains("replace_all"), "{msg}");
        let msg =
            err(run(&EditFile, &roots, json!({"path": "code.rs", "old_string": "= 9", "new_string": "= 3"})));
        assert!(msg.contains("not found"), "{msg}");
        let msg =
            err(run(&EditFile, &roots, json!({"path": "code.rs", "old_string": "a", "new_string": "a"})));
        assert!(msg.contains("same"), "{msg}");
        err(run(&EditFile, &roots, json!({"path": "code.rs", "old_string": "", "new_string": "x"})));
        assert_eq!(fs::read_to_string(&path).unwrap(), "let a = 1;\nlet b = 1;\nlet c = 2;\n");

        let out = ok(run(
            &EditFile,
            &roots,
            json!({"path": "code.rs", "old_string": "let b = 1", "new_string": "let b = 5"}),
        ));
        assert!(out.contains("replaced 1 occurrence in"), "{out}");
        let out = ok(run(
            &EditFile,
            &roots,
            json!({"path": "code.rs", "old_string": "let ", "new_string": "const ", "replace_all": true}),
        ));
        assert!(out.contains("replaced 3 occurrences"), "{out}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "const a = 1;\nconst b = 5;\nconst c = 2;\n");
        assert_eq!(fs::read_dir(&roots.agent).unwrap().count(), 1, "no temporary file left");

        fs::write(roots.agent.join("win.txt"), "one\r\ntwo\r\n").unwrap();
        let msg = err(run(
            &EditFile,
            &roots,
            json!({"path": "win.txt", "old_string": "one\ntwo", "new_string": "x"}),
        ));
        assert!(msg.contains("CRLF"), "{msg}");
        assert!(
            err(run(&EditFile, &roots, json!({"path": "missing.txt", "old_string": "a", "new_string": "b"})))
                .contains("could not edit")
        );
        fs::write(roots.agent.join("bin"), b"a\0b").unwrap();
        assert!(
            err(run(&EditFile, &roots, json!({"path": "bin", "old_string": "a", "new_string": "b"})))
                .contains("binary")
        );
    }

    #[test]
    fn list_sorts_marks_and_bounds_recursion() {
        let (_dir, roots) = session();
        let a = &roots.agent;
        fs::write(a.join("b.txt"), "12345").unwrap();
        fs::write(a.join("a.txt"), "x".repeat(2048)).unwrap();
        fs::create_dir_all(a.join("c/d")).unwrap();
        fs::write(a.join("c/d/e.txt"), "").unwrap();
        fs::create_dir_all(a.join(".git/objects")).unwrap();
        symlink(a.join("c"), a.join("z_link")).unwrap();

        let out = ok(run(&ListFiles, &roots, json!({})));
        let lines: Vec<&str> = out.lines().skip(1).collect();
        assert_eq!(
            lines,
            vec![
                ".git/",
                "a.txt  (2.0 KiB)",
                "b.txt  (5 B)",
                "c/",
                &format!("z_link/ -> {}  (symbolic link)", a.join("c").display())
            ]
        );

        let out = ok(run(&ListFiles, &roots, json!({"recursive": true})));
        let lines: Vec<&str> = out.lines().skip(1).collect();
        assert_eq!(
            &lines[..6],
            &[".git/  (not expanded)", "a.txt  (2.0 KiB)", "b.txt  (5 B)", "c/", "c/d/", "c/d/e.txt  (0 B)"]
        );
        assert!(lines[6].starts_with("z_link/ -> ") && lines.len() == 7, "links are not followed: {out}");

        // Depth cap.
        let deep = (1..=12).map(|i| format!("l{i}")).collect::<Vec<_>>().join("/");
        fs::create_dir_all(a.join("deep").join(&deep)).unwrap();
        let out = ok(run(&ListFiles, &roots, json!({"path": "deep", "recursive": true})));
        assert!(out.contains("l1/l2/l3/l4/l5/l6/l7/l8/  (deeper levels not shown)"), "{out}");
        assert!(!out.contains("l9") && out.contains("not expanded; list them directly"), "{out}");

        // Entry cap.
        fs::create_dir(a.join("wide")).unwrap();
        for i in 0..1100 {
            fs::write(a.join(format!("wide/f{i:04}")), "").unwrap();
        }
        let out = ok(run(&ListFiles, &roots, json!({"path": "wide", "recursive": true})));
        assert_eq!(out.lines().count(), 1 + LIST_MAX_ENTRIES + 1, "header, entries, note");
        assert!(out.contains("f0999") && !out.contains("f1000") && out.contains("cut at 1000 entries"));

        assert!(err(run(&ListFiles, &roots, json!({"path": "b.txt"}))).contains("read_file"));
        fs::create_dir(a.join("empty")).unwrap();
        assert!(ok(run(&ListFiles, &roots, json!({"path": "empty"}))).contains("(empty directory)"));
    }

    #[test]
    fn summaries_show_the_path() {
        assert_eq!(ReadFile.summary(&json!({"path": "notes/a.md"})), "notes/a.md");
        assert_eq!(ListFiles.summary(&json!({})), ".");
        let long = "x".repeat(300);
        assert_eq!(WriteFile.summary(&json!({"path": long})).chars().count(), 121);
    }
}
