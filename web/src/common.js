// What the portal and the console share: the gateway client, the login (SPID / CIE through the
// gateway, then the one-time code exchanged at /auth/token), Italian/English texts, a tiny DOM
// builder (text is always set as text, never as HTML) and a hash router.
import 'bootstrap-italia/dist/css/bootstrap-italia.min.css';
import './fonts.css';
import './app.css';

const meta = (name, fallback) => document.querySelector(`meta[name="${name}"]`)?.content || fallback;

/** The Comune this page serves: the page's meta tag, or `?tenant=` once (kept for the session). */
export const TENANT = (() => {
  const asked = new URLSearchParams(location.search).get('tenant');
  if (asked && /^[a-z0-9-]{1,40}$/.test(asked)) sessionStorage.setItem('sportello.tenant', asked);
  return sessionStorage.getItem('sportello.tenant') || meta('sportello-tenant', 'cremona');
})();
export const TENANT_NAME = meta('sportello-tenant-name', TENANT);

export const tenantPath = (path) => `/v1/tenants/${encodeURIComponent(TENANT)}${path}`;

// -- texts --------------------------------------------------------------------------------------
const SHARED = {
  it: {
    skip: 'Vai al contenuto principale',
    switch_language: 'English',
    switch_language_label: 'Switch to English',
    logout: 'Esci',
    login_spid: 'Entra con SPID',
    login_cie: 'Entra con CIE',
    choose_idp: 'Scegli il tuo gestore di identità SPID',
    loading: 'Caricamento…',
    error: 'Errore',
    session_expired: 'La sessione è scaduta: accedi di nuovo.',
    logged_as: 'Accesso come {subject}',
    amount: 'Importo',
    due_date: 'Scadenza',
    status: 'Stato',
    description: 'Causale',
    actions: 'Azioni',
    notice_number: 'Numero avviso',
    download_notice: 'Scarica avviso',
    footer: 'Servizio del {name} su Sportello, piattaforma open source per i Comuni.',
    accessibility: 'Dichiarazione di accessibilità',
    privacy: 'Informativa privacy',
    nothing: 'Nessun elemento.',
    close: 'Chiudi',
  },
  en: {
    skip: 'Skip to main content',
    switch_language: 'Italiano',
    switch_language_label: "Passa all'italiano",
    logout: 'Log out',
    login_spid: 'Log in with SPID',
    login_cie: 'Log in with CIE',
    choose_idp: 'Choose your SPID identity provider',
    loading: 'Loading…',
    error: 'Error',
    session_expired: 'Your session has expired: please log in again.',
    logged_as: 'Logged in as {subject}',
    amount: 'Amount',
    due_date: 'Due date',
    status: 'Status',
    description: 'Description',
    actions: 'Actions',
    notice_number: 'Notice number',
    download_notice: 'Download notice',
    footer: 'A service of the {name} on Sportello, the open-source platform for Comuni.',
    accessibility: 'Accessibility statement',
    privacy: 'Privacy notice',
    nothing: 'Nothing here.',
    close: 'Close',
  },
};

const texts = { it: { ...SHARED.it }, en: { ...SHARED.en } };
export let lang = localStorage.getItem('sportello.lang') === 'en' ? 'en' : 'it';

export function addTexts(more) {
  Object.assign(texts.it, more.it);
  Object.assign(texts.en, more.en);
}

export function t(key, vars = {}) {
  const text = texts[lang][key] ?? texts.it[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ''));
}

export function setLang(next) {
  lang = next === 'en' ? 'en' : 'it';
  localStorage.setItem('sportello.lang', lang);
  document.documentElement.lang = lang;
}

export function money(cents) {
  return new Intl.NumberFormat(lang === 'en' ? 'en-GB' : 'it-IT', { style: 'currency', currency: 'EUR' })
    .format(cents / 100);
}

export function date(value) {
  if (!value) return '';
  const parsed = new Date(value);
  if (Number.isNaN(parsed.getTime())) return String(value);
  return parsed.toLocaleDateString(lang === 'en' ? 'en-GB' : 'it-IT');
}

// -- DOM ------------------------------------------------------------------------------------------
/** h('p', {class: 'x'}, 'text', child): an element; strings become text nodes (never HTML). */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function alert(kind, ...content) {
  return h('div', { class: `alert alert-${kind}`, role: kind === 'danger' ? 'alert' : 'status' }, ...content);
}

export function errorText(error) {
  if (error instanceof ApiError) {
    return `${error.detail}${error.code ? ` (${error.code})` : ''}`;
  }
  return String(error?.message || error);
}

/** A <table> with a caption (screen readers announce it) and header cells with scope. */
export function table(caption, headers, rows) {
  return h('div', { class: 'table-responsive' },
    h('table', { class: 'table table-striped' },
      h('caption', {}, caption),
      h('thead', {}, h('tr', {}, headers.map((name) => h('th', { scope: 'col' }, name)))),
      h('tbody', {}, rows.length ? rows.map((cells) => h('tr', {}, cells.map((c) => h('td', {}, c))))
        : h('tr', {}, h('td', { colspan: headers.length }, t('nothing'))))));
}

/** A labelled form field (bootstrap-italia's "form-group" with an always-visible label). */
export function field(id, label, input, help) {
  input.id = id;
  if (help) input.setAttribute('aria-describedby', `${id}-help`);
  return h('div', { class: 'mb-3' },
    h('label', { for: id, class: 'form-label fw-semibold' }, label),
    input,
    help ? h('small', { id: `${id}-help`, class: 'form-text' }, help) : null);
}

// -- the gateway ----------------------------------------------------------------------------------
export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

let sessionKey = 'sportello.session';
export function useSession(app) {
  sessionKey = `sportello.${app}.${TENANT}.session`;
}

export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(sessionKey) || 'null');
  } catch {
    return null;
  }
}

function saveSession(tokens) {
  if (tokens) sessionStorage.setItem(sessionKey, JSON.stringify(tokens));
  else sessionStorage.removeItem(sessionKey);
}

async function problemOf(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    body = {};
  }
  return new ApiError(response.status, body.code || '', body.detail || body.title || response.statusText);
}

async function refresh() {
  const current = session();
  if (!current?.refresh_token) return false;
  const answer = await fetch(tenantPath('/auth/token'), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ grant_type: 'refresh_token', refresh_token: current.refresh_token }),
  });
  if (!answer.ok) {
    saveSession(null);
    return false;
  }
  saveSession(await answer.json());
  return true;
}

/** Call the gateway. `json` sends a JSON body; `as` is 'json' (default), 'blob' or 'response'. */
export async function api(path, { method = 'GET', json, body, headers = {}, auth = true, as = 'json' } = {}) {
  const send = async () => {
    const all = { ...headers };
    if (json !== undefined) all['Content-Type'] = 'application/json';
    const tokens = session();
    if (auth && tokens) all.Authorization = `Bearer ${tokens.access_token}`;
    return fetch(path, { method, headers: all, body: json !== undefined ? JSON.stringify(json) : body });
  };
  let response = await send();
  if (response.status === 401 && auth && session() && (await refresh())) response = await send();
  if (!response.ok) throw await problemOf(response);
  if (as === 'blob') return response.blob();
  if (as === 'response') return response;
  return response.json();
}

/** Save a file the gateway answers (a notice, a certificate) under `filename`. */
export async function download(path, filename) {
  const blob = await api(path, { as: 'blob' });
  const url = URL.createObjectURL(blob);
  const link = h('a', { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30_000);
}

// -- login ----------------------------------------------------------------------------------------
/** Where the gateway sends the browser back after SPID / CIE (registered in the tenant file). */
export function returnUrl() {
  return `${location.origin}${location.pathname}`;
}

/** After the ACS: `?code=` in the URL becomes tokens (the code is single use, 60 s). */
export async function completeLogin() {
  const params = new URLSearchParams(location.search);
  const code = params.get('code');
  if (!code) return null;
  params.delete('code');
  const rest = params.toString();
  history.replaceState(null, '', `${location.pathname}${rest ? `?${rest}` : ''}${location.hash}`);
  const tokens = await api(tenantPath('/auth/token'), {
    method: 'POST', auth: false, json: { grant_type: 'authorization_code', code },
  });
  saveSession(tokens);
  return tokens;
}

export async function whoAmI() {
  if (!session()) return null;
  try {
    return await api('/v1/me');
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      saveSession(null);
      return null;
    }
    throw error;
  }
}

export async function logout() {
  const tokens = session();
  if (tokens) {
    try {
      await api(tenantPath('/auth/logout'), { method: 'POST', json: { refresh_token: tokens.refresh_token } });
    } catch {
      // the tokens go anyway: they expire on their own
    }
  }
  saveSession(null);
}

/** The SPID button (a list of the Comune's identity providers) and the CIE button. */
export function loginPanel() {
  const back = encodeURIComponent(returnUrl());
  const list = h('ul', { class: 'list-unstyled mt-2', id: 'spid-idps', hidden: true, 'aria-label': t('choose_idp') });
  const spid = h('button', {
    type: 'button', class: 'btn btn-primary me-2 mb-2', id: 'login-spid', 'aria-expanded': 'false',
    'aria-controls': 'spid-idps',
    onclick: async () => {
      const open = list.hidden;
      list.hidden = !open;
      spid.setAttribute('aria-expanded', String(open));
      if (open && !list.childElementCount) {
        list.append(h('li', {}, t('loading')));
        try {
          const { identity_providers: idps } = await api(tenantPath('/auth/spid/idps'), { auth: false });
          list.replaceChildren(...idps.map((idp) => h('li', { class: 'mb-1' }, h('a', {
            class: 'btn btn-outline-primary btn-sm',
            href: `${tenantPath('/auth/spid/login')}?idp=${encodeURIComponent(idp.entity_id)}&return_url=${back}`,
          }, idp.name || idp.entity_id))));
        } catch (error) {
          list.replaceChildren(h('li', {}, alert('danger', errorText(error))));
        }
      }
    },
  }, t('login_spid'));
  const cie = h('a', { class: 'btn btn-primary mb-2', id: 'login-cie', href: `${tenantPath('/auth/cie/login')}?return_url=${back}` },
    t('login_cie'));
  return h('div', { class: 'sp-login' }, spid, cie, list);
}

// -- page frame and router ------------------------------------------------------------------------
/** Fill the static frame's texts, wire the language switch, the skip link and the logout button. */
export function frame({ onLanguage, onLogout }) {
  document.documentElement.lang = lang;
  for (const element of document.querySelectorAll('[data-i18n]')) {
    element.textContent = t(element.dataset.i18n, { name: TENANT_NAME });
  }
  for (const element of document.querySelectorAll('[data-i18n-label]')) {
    element.setAttribute('aria-label', t(element.dataset.i18nLabel));
  }
  for (const element of document.querySelectorAll('[data-tenant-name]')) element.textContent = TENANT_NAME;
  const switcher = document.getElementById('lang');
  switcher.textContent = t('switch_language');
  switcher.setAttribute('lang', lang === 'it' ? 'en' : 'it');
  switcher.setAttribute('aria-label', t('switch_language_label'));
  switcher.onclick = () => {
    setLang(lang === 'it' ? 'en' : 'it');
    frame({ onLanguage, onLogout });
    onLanguage();
  };
  const skip = document.querySelector('.skip-link');
  skip.onclick = (event) => {
    event.preventDefault();
    document.getElementById('main').focus();
  };
  const out = document.getElementById('logout');
  out.onclick = onLogout;
}

export function showUser(me) {
  const who = document.getElementById('who');
  const out = document.getElementById('logout');
  who.textContent = me ? t('logged_as', { subject: me.subject }) : '';
  out.hidden = !me;
}

/** `#/name?x=1` -> {name, params}; other fragments (e.g. the skip link's) are not routes. */
export function currentRoute() {
  const hash = location.hash.startsWith('#/') ? location.hash.slice(2) : '';
  const [name, query] = hash.split('?');
  return { name: name || '', params: new URLSearchParams(query || '') };
}

let rendered = false;

/** Render `view()` into <main>, set the title, and move focus to the new heading (announced). */
export async function render(view, title) {
  const main = document.getElementById('main');
  main.setAttribute('aria-busy', 'true');
  main.replaceChildren(h('p', {}, t('loading')));
  let content;
  try {
    content = await view();
  } catch (error) {
    content = alert('danger', `${t('error')}: ${errorText(error)}`);
  }
  main.replaceChildren(content);
  main.removeAttribute('aria-busy');
  const heading = main.querySelector('h1');
  document.title = `${heading ? heading.textContent : title} · ${TENANT_NAME}`;
  for (const link of document.querySelectorAll('[data-route]')) {
    const here = link.dataset.route === currentRoute().name;
    link.classList.toggle('active', here);
    if (here) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    // after a page change, not on arrival: then the skip link must stay the first Tab stop
    if (rendered) heading.focus({ preventScroll: false });
  }
  rendered = true;
}

/** Both pages start alike: frame, finish a login coming back from SPID/CIE, who am I, then route. */
export async function startApp(show, setMe) {
  frame({
    onLanguage: show,
    onLogout: async () => {
      await logout();
      setMe(null);
      showUser(null);
      location.hash = '#/';
      show();
    },
  });
  try {
    await completeLogin();
  } catch (error) {
    document.getElementById('main').replaceChildren(alert('danger', errorText(error)));
  }
  const me = await whoAmI().catch(() => null);
  setMe(me);
  showUser(me);
  window.addEventListener('hashchange', () => {
    if (location.hash.startsWith('#/') || location.hash === '') show();
  });
  await show();
}
