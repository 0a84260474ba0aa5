// pincer — the Models page (the owner): the model endpoints agents can use. Those from the
// host's configuration are listed as they are; endpoints added here can be checked, added,
// given a default model and removed. A URL is checked first (what server it is, which models it
// offers, whether it takes the key); only then can it be added.
//
// It talks only to the HTTP API (docs/API.md "Models"); keys are sent once and never come back.

'use strict';

window.PincerModels = (() => {
  const $ = (id) => document.getElementById(id);
  const { el, api } = window.PincerAccess;

  let probed = null; // the last probe's answer, for the form

  function showError(node, e) {
    node.textContent = e instanceof TypeError ? 'Could not reach pincer; try again.' : e.message;
    node.hidden = false;
  }

  async function open() {
    $('models-error').hidden = true;
    resetForm();
    $('models-dialog').showModal();
    await refresh();
  }

  function resetForm() {
    $('endpoint-form').reset();
    $('endpoint-found').hidden = true;
    $('endpoint-error').hidden = true;
    probed = null;
  }

  async function refresh() {
    const list = $('models-list');
    list.replaceChildren(el('li', 'muted', 'Asking each endpoint for its models…'));
    let data;
    try {
      data = await api('GET', '/api/models');
    } catch (e) {
      list.replaceChildren();
      showError($('models-error'), e);
      return;
    }
    list.replaceChildren(...data.providers.map((p) => row(p, data.default_provider)));
  }

  /** One endpoint: its name, server, models, and (for the ones added here) what can be changed. */
  function row(p, defaultProvider) {
    const li = el('li', 'endpoint');
    li.dataset.provider = p.provider;
    const head = el('div', 'endpoint-head');
    head.append(el('strong', '', p.name || p.provider));
    const tags = [p.kind || (p.provider === 'mock' ? 'built-in test model' : p.provider)];
    if (!p.id && p.provider !== 'mock') tags.push('from .env');
    if (p.provider === defaultProvider) tags.push('host default');
    if (p.id) tags.push(p.has_key ? 'key kept' : 'no key');
    head.append(el('span', 'muted', ` ${tags.join(' · ')}`));
    li.append(head);
    if (p.endpoint) li.append(el('code', 'endpoint-url', p.endpoint));
    const models = el('p', p.error ? 'form-error' : 'muted');
    models.textContent = p.error ? `Could not list its models: ${p.error}`
      : `${p.models.length} model(s)${p.default_model ? `; default ${p.default_model}` : ''}`;
    li.append(models);
    if (!p.id) return li;
    if (p.agents && p.agents.length) li.append(el('p', 'muted', `Used by ${p.agents.length} agent(s)`));
    const actions = el('div', 'endpoint-actions');
    if (p.models.length) {
      const label = el('label', '', 'Default model ');
      const sel = el('select');
      sel.setAttribute('aria-label', `Default model of ${p.name}`);
      for (const m of p.models) {
        const o = el('option', '', m);
        o.value = m;
        sel.append(o);
      }
      sel.value = p.default_model || p.models[0];
      sel.addEventListener('change', () => change(p, { default_model: sel.value }));
      label.append(sel);
      actions.append(label);
    }
    const remove = el('button', 'link-btn danger', 'Remove');
    remove.type = 'button';
    remove.addEventListener('click', () => removeEndpoint(p));
    actions.append(remove);
    li.append(actions);
    return li;
  }

  async function change(p, patch) {
    try {
      await api('PATCH', `/api/models/${encodeURIComponent(p.id)}`, patch);
    } catch (e) {
      showError($('models-error'), e);
    }
    await refresh();
  }

  async function removeEndpoint(p) {
    const used = p.agents && p.agents.length;
    const question = used
      ? `${p.agents.length} agent(s) use ${p.name}. Remove it and move them to the host's default model?`
      : `Remove ${p.name}?`;
    if (!confirm(question)) return;
    try {
      await api('DELETE', `/api/models/${encodeURIComponent(p.id)}${used ? '?force=1' : ''}`);
    } catch (e) {
      showError($('models-error'), e);
    }
    await refresh();
  }

  function formBody() {
    const body = { url: $('endpoint-url').value.trim() };
    const key = $('endpoint-key').value.trim();
    if (key) body.api_key = key;
    return body;
  }

  async function probe() {
    const err = $('endpoint-error');
    err.hidden = true;
    $('endpoint-found').hidden = true;
    const body = formBody();
    if (!body.url) {
      showError(err, new Error('Enter the server URL first.'));
      return;
    }
    const button = $('endpoint-probe');
    button.disabled = true;
    button.textContent = 'Checking…';
    try {
      probed = await api('POST', '/api/models/probe', body);
    } catch (e) {
      probed = null;
      showError(err, e);
      return;
    } finally {
      button.disabled = false;
      button.textContent = 'Check';
    }
    $('endpoint-kind').textContent = probed.requires_credential
      ? `${probed.server} at ${probed.endpoint}: it needs an API key. Paste it above and check again.`
      : `${probed.server} at ${probed.endpoint}: ${probed.models.length} model(s).`;
    const sel = $('endpoint-model');
    sel.replaceChildren(...probed.models.map((m) => {
      const o = el('option', '', m);
      o.value = m;
      return o;
    }));
    sel.disabled = !probed.models.length;
    $('endpoint-add').disabled = probed.requires_credential;
    if (!$('endpoint-name').value) {
      const host = (() => {
        try { return new URL(probed.endpoint).hostname; } catch { return ''; }
      })();
      $('endpoint-name').value = `${probed.server} ${host}`.trim().slice(0, 64);
    }
    $('endpoint-found').hidden = false;
  }

  async function add(ev) {
    ev.preventDefault();
    const err = $('endpoint-error');
    err.hidden = true;
    const body = { ...formBody(), name: $('endpoint-name').value.trim() };
    if (probed) Object.assign(body, { kind: probed.kind, url: probed.endpoint });
    const model = $('endpoint-model').value;
    if (model) body.default_model = model;
    const button = $('endpoint-add');
    button.disabled = true;
    try {
      await api('POST', '/api/models', body);
    } catch (e) {
      showError(err, e);
      button.disabled = false;
      return;
    }
    resetForm();
    await refresh();
  }

  function init(openButton) {
    openButton.addEventListener('click', open);
    $('endpoint-probe').addEventListener('click', probe);
    $('endpoint-form').addEventListener('submit', add);
    $('endpoint-url').addEventListener('input', () => { $('endpoint-found').hidden = true; });
    $('models-close').addEventListener('click', () => $('models-dialog').close());
  }

  return { init, open };
})();
