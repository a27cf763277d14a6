// The reference citizen portal: log in with SPID or CIE, see and pay my payment positions, request a
// certificate, pay its stamp duty, download it; anyone verifies a certificate by its code.
// Only the public gateway API (gateway/openapi.yaml) is used.
import {
  addTexts, alert, api, currentRoute, date, download, errorText, field, h, loginPanel, money, render, t,
  table, tenantPath, useSession, TENANT, startApp,
} from './common.js';

addTexts({
  it: {
    slim_brand: 'Servizi online del Comune',
    tagline: 'Sportello del cittadino',
    nav_label: 'Menu principale',
    nav_home: 'Home',
    nav_payments: 'Pagamenti',
    nav_certificates: 'Certificati',
    nav_verify: 'Verifica un certificato',
    welcome_title: 'Benvenuto allo sportello online',
    welcome_text: 'Accedi con la tua identità digitale per vedere i tuoi pagamenti e richiedere certificati anagrafici.',
    verify_hint: 'Devi controllare un certificato? Puoi verificarlo senza accedere.',
    home_title: 'I tuoi servizi',
    home_payments: 'Consulta e paga le tue posizioni debitorie pagoPA, scarica gli avvisi.',
    home_certificates: 'Richiedi un certificato anagrafico, paga il bollo e scaricalo.',
    payments_title: 'I miei pagamenti',
    payments_caption: 'Posizioni debitorie intestate a te',
    pay: 'Paga',
    paid_back: 'Sei tornato dal pagamento. La ricevuta arriva dal circuito pagoPA in pochi istanti: aggiorna la pagina per vedere lo stato.',
    pay_cancelled: 'Pagamento annullato.',
    certificates_title: 'Certificati anagrafici',
    request_title: 'Richiedi un certificato',
    certificate_type: 'Tipo di certificato',
    exemption: 'Esenzione dall\'imposta di bollo',
    no_exemption: 'Nessuna: pago il bollo ({amount})',
    exemption_description: 'Uso dichiarato (per l\'esenzione)',
    request: 'Richiedi',
    requests_caption: 'Le tue richieste in questa sessione del browser',
    request_id: 'Richiesta',
    cert_type: 'Certificato',
    verification_code: 'Codice di verifica',
    status_awaiting_payment: 'In attesa del pagamento del bollo',
    status_issuing: 'In emissione',
    status_issued: 'Emesso',
    status_failed: 'Non riuscito',
    status_published: 'Da pagare',
    status_paid: 'Pagato',
    status_draft: 'In preparazione',
    status_invalid: 'Annullato',
    status_expired: 'Scaduto',
    status_reported: 'Rendicontato',
    pay_stamp: 'Paga il bollo',
    stamp_pending: 'La posizione del bollo è in preparazione…',
    download_certificate: 'Scarica il certificato',
    requested: 'Richiesta registrata: {id}.',
    refresh: 'Aggiorna',
    verify_title: 'Verifica un certificato',
    verify_text: 'Inserisci il codice di verifica stampato sul certificato. Non serve accedere.',
    code: 'Codice di verifica',
    code_help: 'Quattro gruppi di caratteri separati da trattini, es. ABCD-EFGH-JKLM-NPQR',
    verify: 'Verifica',
    genuine: 'Certificato autentico',
    not_genuine: 'Certificato non riconosciuto',
    valid_until: 'Valido fino al {date}',
    expired: 'Non più valido',
    issued_on: 'Emesso il {date}',
    login_needed: 'Accedi per usare questo servizio.',
    accessibility_title: 'Dichiarazione di accessibilità',
    accessibility_text: 'Questo sito è progettato per essere conforme alle WCAG 2.1 livello AA (UNI CEI EN 301549) secondo le Linee guida AgID. Ogni pagina è verificata automaticamente con axe-core.',
  },
  en: {
    slim_brand: 'Online services of the Comune',
    tagline: 'Citizen services',
    nav_label: 'Main menu',
    nav_home: 'Home',
    nav_payments: 'Payments',
    nav_certificates: 'Certificates',
    nav_verify: 'Verify a certificate',
    welcome_title: 'Welcome to the online services',
    welcome_text: 'Log in with your digital identity to see your payments and request registry certificates.',
    verify_hint: 'Need to check a certificate? You can verify it without logging in.',
    home_title: 'Your services',
    home_payments: 'See and pay your pagoPA payment positions, download the notices.',
    home_certificates: 'Request a registry certificate, pay its stamp duty and download it.',
    payments_title: 'My payments',
    payments_caption: 'Payment positions in your name',
    pay: 'Pay',
    paid_back: 'You are back from the payment. The receipt comes from pagoPA in a few moments: refresh to see the status.',
    pay_cancelled: 'Payment cancelled.',
    certificates_title: 'Registry certificates',
    request_title: 'Request a certificate',
    certificate_type: 'Certificate type',
    exemption: 'Stamp duty exemption',
    no_exemption: 'None: I pay the stamp duty ({amount})',
    exemption_description: 'Declared use (for the exemption)',
    request: 'Request',
    requests_caption: 'Your requests in this browser session',
    request_id: 'Request',
    cert_type: 'Certificate',
    verification_code: 'Verification code',
    status_awaiting_payment: 'Waiting for the stamp duty',
    status_issuing: 'Being issued',
    status_issued: 'Issued',
    status_failed: 'Failed',
    status_published: 'To pay',
    status_paid: 'Paid',
    status_draft: 'Being prepared',
    status_invalid: 'Cancelled',
    status_expired: 'Expired',
    status_reported: 'Reported',
    pay_stamp: 'Pay the stamp duty',
    stamp_pending: 'The stamp-duty position is being prepared…',
    download_certificate: 'Download the certificate',
    requested: 'Request recorded: {id}.',
    refresh: 'Refresh',
    verify_title: 'Verify a certificate',
    verify_text: 'Enter the verification code printed on the certificate. No login needed.',
    code: 'Verification code',
    code_help: 'Four groups of characters separated by hyphens, e.g. ABCD-EFGH-JKLM-NPQR',
    verify: 'Verify',
    genuine: 'Genuine certificate',
    not_genuine: 'Certificate not recognised',
    valid_until: 'Valid until {date}',
    expired: 'No longer valid',
    issued_on: 'Issued on {date}',
    login_needed: 'Log in to use this service.',
    accessibility_title: 'Accessibility statement',
    accessibility_text: 'This site is designed to conform to WCAG 2.1 level AA (EN 301549) following the AgID guidelines. Every page is checked automatically with axe-core.',
  },
});

useSession('portal');
let me = null;

const statusText = (status) => t(`status_${status}`);
const back = (route, outcome) => `${location.origin}${location.pathname}#/${route}?esito=${outcome}`;

async function pay(position, route) {
  const started = await api(tenantPath(`/payments/positions/${encodeURIComponent(position.id)}/checkout`), {
    method: 'POST',
    json: { return_urls: { ok: back(route, 'ok'), cancel: back(route, 'annullato'), error: back(route, 'errore') } },
  });
  location.assign(started.redirect_url);
}

function outcomeBanner(params) {
  const outcome = params.get('esito');
  if (outcome === 'ok') return alert('success', t('paid_back'));
  if (outcome) return alert('warning', t('pay_cancelled'));
  return null;
}

function requireLogin(view) {
  return async (params) => (me ? view(params) : h('section', {}, h('h1', {}, t('welcome_title')),
    alert('info', t('login_needed')), loginPanel()));
}

// -- views ----------------------------------------------------------------------------------------
async function home() {
  if (!me) {
    return h('section', { 'aria-labelledby': 'welcome' },
      h('h1', { id: 'welcome' }, t('welcome_title')),
      h('p', { class: 'lead' }, t('welcome_text')),
      loginPanel(),
      h('p', { class: 'mt-4' }, t('verify_hint'), ' ', h('a', { href: '#/verify' }, t('nav_verify'))));
  }
  const card = (route, title, text) => h('div', { class: 'col-md-6 mb-3' },
    h('div', { class: 'card card-bg h-100' }, h('div', { class: 'card-body' },
      h('h2', { class: 'card-title h5' }, h('a', { href: `#/${route}` }, title)),
      h('p', { class: 'card-text' }, text))));
  return h('section', {}, h('h1', {}, t('home_title')),
    h('div', { class: 'row' }, card('payments', t('nav_payments'), t('home_payments')),
      card('certificates', t('nav_certificates'), t('home_certificates'))));
}

async function payments(params) {
  const { items } = await api(tenantPath('/payments/mine'));
  const rows = items.map((p) => [
    p.description,
    money(p.amount_cents),
    date(p.due_date),
    h('span', { class: 'sp-code' }, p.notice_number),
    statusText(p.status),
    h('div', { class: 'sp-actions' },
      p.status === 'published' ? h('button', {
        type: 'button', class: 'btn btn-primary btn-sm', 'aria-label': `${t('pay')}: ${p.description}`,
        onclick: () => pay(p, 'payments').catch((e) => window.alert(errorText(e))),
      }, t('pay')) : null,
      h('button', {
        type: 'button', class: 'btn btn-outline-primary btn-sm', 'aria-label': `${t('download_notice')}: ${p.description}`,
        onclick: () => download(tenantPath(`/payments/positions/${encodeURIComponent(p.id)}/notice`),
          `avviso-${p.notice_number}.pdf`),
      }, t('download_notice'))),
  ]);
  return h('section', {}, h('h1', {}, t('payments_title')), outcomeBanner(params),
    table(t('payments_caption'), [t('description'), t('amount'), t('due_date'), t('notice_number'), t('status'),
      t('actions')], rows));
}

async function certificates(params) {
  const catalogue = await api(tenantPath('/certificates/catalogue'));
  const names = Object.fromEntries(catalogue.types.map((c) => [c.id, c.description]));
  const status = h('div', { 'aria-live': 'polite', id: 'request-status' });
  const typeSelect = h('select', { class: 'form-select', name: 'certificate_type', required: true },
    catalogue.types.filter((c) => c.online !== false).map((c) => h('option', { value: c.id }, c.description)));
  const exemptionSelect = h('select', { class: 'form-select', name: 'exemption' },
    h('option', { value: '' }, t('no_exemption', { amount: money(catalogue.stamp_duty_cents) })),
    catalogue.exemptions.map((e) => h('option', { value: e.id }, e.description)));
  const useInput = h('input', { class: 'form-control', name: 'exemption_description', maxlength: 200, type: 'text' });
  const form = h('form', {
    class: 'mb-5', id: 'certificate-form',
    onsubmit: async (event) => {
      event.preventDefault();
      const body = { certificate_type: Number(typeSelect.value) };
      if (exemptionSelect.value) {
        body.exemption = Number(exemptionSelect.value);
        if (useInput.value.trim()) body.exemption_description = useInput.value.trim();
      }
      try {
        const done = await api(tenantPath('/certificates'), { method: 'POST', json: body });
        await render(() => certificates(new URLSearchParams({ nuova: done.request_id })), t('certificates_title'));
      } catch (error) {
        status.replaceChildren(alert('danger', errorText(error)));
      }
    },
  },
  h('h2', { class: 'h4' }, t('request_title')),
  field('certificate-type', t('certificate_type'), typeSelect),
  field('certificate-exemption', t('exemption'), exemptionSelect),
  field('certificate-use', t('exemption_description'), useInput),
  h('button', { type: 'submit', class: 'btn btn-primary' }, t('request')), status);

  // the citizen's own requests, from any device or the counter (GET /certificates), newest first
  const [{ requests }, mine] = await Promise.all([
    api(tenantPath('/certificates?limit=20')),
    api(tenantPath('/payments/mine')),
  ]);
  const rows = requests.map((r) => {
    const position = mine.items.find((p) => p.reference === r.request_id && p.status === 'published');
    let action = null;
    if (r.status === 'awaiting_payment') {
      action = position ? h('button', {
        type: 'button', class: 'btn btn-primary btn-sm', 'aria-label': `${t('pay_stamp')} (${money(position.amount_cents)}): ${r.request_id}`,
        onclick: () => pay(position, 'certificates').catch((e) => window.alert(errorText(e))),
      }, `${t('pay_stamp')} (${money(position.amount_cents)})`) : h('span', {}, t('stamp_pending'));
    } else if (r.status === 'issued') {
      action = h('button', {
        type: 'button', class: 'btn btn-primary btn-sm',
        'aria-label': `${t('download_certificate')}: ${r.request_id}`,
        onclick: () => download(tenantPath(`/certificates/${encodeURIComponent(r.request_id)}/document`),
          `certificato-${r.request_id}.pdf`),
      }, t('download_certificate'));
    }
    const code = r.certificate?.verification_code;
    return [
      h('span', { class: 'sp-code' }, r.request_id),
      names[r.certificate_type] || String(r.certificate_type),
      h('span', { dataset: { status: r.status } }, statusText(r.status)),
      code ? h('a', { class: 'sp-code', href: `#/verify?code=${encodeURIComponent(code)}` }, code) : '',
      action || '',
    ];
  });
  const fresh = params.get('nuova');
  return h('section', {}, h('h1', {}, t('certificates_title')), outcomeBanner(params),
    fresh ? alert('success', t('requested', { id: fresh })) : null,
    form,
    h('button', {
      type: 'button', class: 'btn btn-outline-primary btn-sm mb-2', id: 'refresh-requests',
      onclick: () => render(() => certificates(new URLSearchParams()), t('certificates_title')),
    }, t('refresh')),
    table(t('requests_caption'), [t('request_id'), t('cert_type'), t('status'), t('verification_code'), t('actions')],
      rows));
}

async function verify(params) {
  const result = h('div', { 'aria-live': 'polite', id: 'verify-result' });
  const input = h('input', {
    class: 'form-control sp-code', name: 'code', type: 'text', required: true, autocomplete: 'off',
    maxlength: 40, value: params.get('code') || '',
  });
  const check = async () => {
    const code = input.value.trim().toUpperCase();
    if (!code) return;
    try {
      const answer = await api(`/v1/public/tenants/${encodeURIComponent(TENANT)}/certificates/verify/${encodeURIComponent(code)}`,
        { auth: false });
      result.replaceChildren(answer.genuine
        ? alert(answer.valid ? 'success' : 'warning',
          h('h2', { class: 'h5' }, t('genuine')),
          h('p', { class: 'mb-1' }, answer.description || ''),
          h('p', { class: 'mb-1' }, t('issued_on', { date: date(answer.issued_at) })),
          h('p', { class: 'mb-0' }, answer.valid ? t('valid_until', { date: date(answer.valid_until) }) : t('expired')))
        : alert('danger', h('h2', { class: 'h5' }, t('not_genuine')), answer.reason || ''));
    } catch (error) {
      result.replaceChildren(alert('danger', h('h2', { class: 'h5' }, t('not_genuine')), errorText(error)));
    }
  };
  const form = h('form', {
    id: 'verify-form', onsubmit: (event) => { event.preventDefault(); check(); },
  }, field('verify-code', t('code'), input, t('code_help')),
  h('button', { type: 'submit', class: 'btn btn-primary' }, t('verify')));
  if (input.value) setTimeout(check, 0);
  return h('section', {}, h('h1', {}, t('verify_title')), h('p', {}, t('verify_text')), form, result);
}

async function accessibility() {
  return h('section', {}, h('h1', {}, t('accessibility_title')), h('p', {}, t('accessibility_text')));
}

const ROUTES = {
  '': home,
  payments: requireLogin(payments),
  certificates: requireLogin(certificates),
  verify,
  accessibility,
};

function show() {
  const { name, params } = currentRoute();
  const view = ROUTES[name] || home;
  return render(() => view(params), t('tagline'));
}

startApp(show, (who) => { me = who; });
