// The back-office console: operators (citizens the tenant file grants a role) log in with SPID or
// CIE and work at the counter. What they see depends on their roles: dead letters are for admins.
// Only the public gateway API (gateway/openapi.yaml) is used.
import {
  addTexts, alert, api, currentRoute, date, download, errorText, field, h, lang, loginPanel, money, render,
  t, table, tenantPath, useSession, startApp,
} from './common.js';

addTexts({
  it: {
    slim_brand: 'Area riservata agli operatori',
    tagline: 'Console del back office',
    nav_label: 'Menu della console',
    nav_home: 'Inizio',
    nav_counter: 'Certificato allo sportello',
    nav_lookup: 'Consulta residente',
    nav_positions: 'Posizioni debitorie',
    nav_campaigns: 'Campagne di pagamento',
    nav_messages: 'Messaggi IO',
    nav_dead_letters: 'Messaggi non consegnati',
    nav_audit: 'Registro accessi',
    nav_reconciliation: 'Riconciliazione',
    welcome_title: 'Console del back office',
    welcome_text: 'Accedi con SPID o CIE. Vedrai le funzioni che il Comune ti ha assegnato.',
    not_operator: 'Il tuo profilo non è abilitato alla console di questo Comune.',
    home_title: 'Console del back office',
    roles: 'Ruoli: {roles}',
    fiscal_code: 'Codice fiscale',
    reason: 'Motivo della consultazione',
    reason_help: 'Obbligatorio: resta nel registro degli accessi (es. numero di protocollo).',
    counter_title: 'Rilascio di un certificato allo sportello',
    subject_fc: 'Codice fiscale dell\'intestatario',
    requester_fc: 'Codice fiscale del richiedente (se diverso)',
    requester_surname: 'Cognome del richiedente',
    requester_name: 'Nome del richiedente',
    certificate_type: 'Tipo di certificato',
    exemption: 'Esenzione dal bollo',
    no_exemption: 'Nessuna: bollo dovuto ({amount})',
    exemption_description: 'Uso dichiarato',
    issue: 'Rilascia',
    issued: 'Certificato {id}: {status}.',
    status_awaiting_payment: 'in attesa del pagamento del bollo',
    status_issuing: 'in emissione',
    status_issued: 'emesso',
    status_failed: 'non riuscito',
    download_certificate: 'Scarica il certificato',
    lookup_title: 'Consulta un residente',
    lookup: 'Consulta',
    surname: 'Cognome',
    name: 'Nome',
    birth_date: 'Data di nascita',
    birth_place: 'Luogo di nascita',
    address: 'Indirizzo',
    residence_since: 'Residente dal',
    resident_caption: 'Dati anagrafici',
    positions_title: 'Nuova posizione debitoria',
    debtor_fc: 'Codice fiscale del debitore',
    debtor_name: 'Nome e cognome o ragione sociale',
    amount_eur: 'Importo in euro',
    create: 'Crea',
    created_position: 'Posizione creata: avviso {notice}.',
    print_notice: 'Avviso da stampare (PDF)',
    recent_positions: 'Ultime posizioni del Comune',
    campaigns_title: 'Campagna di pagamento da CSV',
    campaign_name: 'Nome della campagna',
    campaign_file: 'File CSV',
    campaign_help: 'Colonne: codice_fiscale; nominativo; importo; scadenza; causale (iban facoltativo).',
    upload: 'Carica',
    uploaded: 'Campagna {id}: {valid} righe valide su {total}.',
    progress: 'Avanzamento',
    progress_text: '{done} di {total} posizioni elaborate',
    campaign_done: 'Campagna completata.',
    report_caption: 'Esito riga per riga',
    row: 'Riga',
    outcome: 'Esito',
    detail: 'Dettaglio',
    outcome_invalid: 'Scartata',
    outcome_pending: 'In corso',
    outcome_created: 'Creata',
    outcome_failed: 'Non riuscita',
    messages_title: 'Messaggi su App IO',
    message_title: 'Un messaggio',
    io_campaign_title: 'Una campagna',
    subject: 'Oggetto',
    markdown: 'Testo (Markdown, almeno 80 caratteri)',
    recipients: 'Codici fiscali dei destinatari, uno per riga',
    send: 'Invia',
    message_state: 'Messaggio {id}: {state}.',
    state_pending: 'in coda per l\'invio',
    state_sent: 'inviato',
    state_not_on_io: 'il destinatario non usa IO',
    state_not_allowed: 'il destinatario non riceve messaggi da questo servizio',
    state_failed: 'non riuscito',
    state_in_doubt: 'da verificare',
    io_progress: '{recipients} destinatari: {sent} inviati, {not_on_io} non su IO, {failed} non riusciti, {pending} in attesa.',
    dead_letters_title: 'Messaggi non consegnati',
    dead_letters_text: 'Eventi che un servizio non ha potuto elaborare. Dopo aver risolto la causa, rimettili in coda.',
    dead_caption: 'In attesa di essere rimessi in coda',
    service: 'Servizio',
    queue_event: 'Coda ed evento',
    dead_reason: 'Motivo',
    when: 'Quando',
    attempts: 'Tentativi',
    replay: 'Rimetti in coda',
    replayed: 'Messaggio {id} rimesso in coda {queue}.',
    none_waiting: 'Nessun messaggio in attesa.',
    audit_title: 'Registro degli accessi all\'anagrafe',
    audit_caption: 'Ultimi accessi (i più recenti prima)',
    actor: 'Operatore',
    action: 'Azione',
    reference: 'Riferimento',
    reconciliation_title: 'Riconciliazione degli incassi',
    reconciliation_missing: 'Il rapporto di riconciliazione non è ancora disponibile su questo gateway.',
    reconciliation_text: 'Confronto tra i flussi di rendicontazione dei PSP e le ricevute di pagamento del Comune.',
    fetch_flows: 'Chiedi ora i flussi al Nodo',
    fetched_flows: 'Richiesta al Nodo completata.',
    section_reported: 'Rendicontati',
    section_paid: 'Pagati, non ancora rendicontati',
    section_missing: 'Rendicontati ma sconosciuti',
    section_mismatched: 'Importo diverso',
    col_iuv: 'IUV',
    col_receipt_cents: 'Importo ricevuta',
    col_reported_cents: 'Importo rendicontato',
    col_position_id: 'Posizione',
    col_flow_id: 'Flusso',
  },
  en: {
    slim_brand: 'Operators only',
    tagline: 'Back-office console',
    nav_label: 'Console menu',
    nav_home: 'Start',
    nav_counter: 'Certificate at the counter',
    nav_lookup: 'Look up a resident',
    nav_positions: 'Payment positions',
    nav_campaigns: 'Payment campaigns',
    nav_messages: 'IO messages',
    nav_dead_letters: 'Dead letters',
    nav_audit: 'Access log',
    nav_reconciliation: 'Reconciliation',
    welcome_title: 'Back-office console',
    welcome_text: 'Log in with SPID or CIE. You will see what the Comune granted you.',
    not_operator: 'Your profile may not use this Comune\'s console.',
    home_title: 'Back-office console',
    roles: 'Roles: {roles}',
    fiscal_code: 'Fiscal code',
    reason: 'Reason for the lookup',
    reason_help: 'Required: it is kept in the access log (e.g. a file number).',
    counter_title: 'Issue a certificate at the counter',
    subject_fc: 'Fiscal code of the person certified',
    requester_fc: 'Fiscal code of the person asking (if different)',
    requester_surname: 'Surname of the person asking',
    requester_name: 'Name of the person asking',
    certificate_type: 'Certificate type',
    exemption: 'Stamp duty exemption',
    no_exemption: 'None: stamp duty due ({amount})',
    exemption_description: 'Declared use',
    issue: 'Issue',
    issued: 'Certificate {id}: {status}.',
    status_awaiting_payment: 'waiting for the stamp duty',
    status_issuing: 'being issued',
    status_issued: 'issued',
    status_failed: 'failed',
    download_certificate: 'Download the certificate',
    lookup_title: 'Look up a resident',
    lookup: 'Look up',
    surname: 'Surname',
    name: 'Name',
    birth_date: 'Date of birth',
    birth_place: 'Place of birth',
    address: 'Address',
    residence_since: 'Resident since',
    resident_caption: 'Registry data',
    positions_title: 'New payment position',
    debtor_fc: 'Debtor fiscal code',
    debtor_name: 'Full name or company name',
    amount_eur: 'Amount in euro',
    create: 'Create',
    created_position: 'Position created: notice {notice}.',
    print_notice: 'Notice to print (PDF)',
    recent_positions: 'The Comune\'s latest positions',
    campaigns_title: 'Payment campaign from a CSV',
    campaign_name: 'Campaign name',
    campaign_file: 'CSV file',
    campaign_help: 'Columns: fiscal_code; name; amount; due_date; description (iban optional).',
    upload: 'Upload',
    uploaded: 'Campaign {id}: {valid} valid rows of {total}.',
    progress: 'Progress',
    progress_text: '{done} of {total} positions processed',
    campaign_done: 'Campaign complete.',
    report_caption: 'Outcome row by row',
    row: 'Row',
    outcome: 'Outcome',
    detail: 'Detail',
    outcome_invalid: 'Rejected',
    outcome_pending: 'In progress',
    outcome_created: 'Created',
    outcome_failed: 'Failed',
    messages_title: 'App IO messages',
    message_title: 'One message',
    io_campaign_title: 'A campaign',
    subject: 'Subject',
    markdown: 'Text (Markdown, at least 80 characters)',
    recipients: 'Recipients\' fiscal codes, one per line',
    send: 'Send',
    message_state: 'Message {id}: {state}.',
    state_pending: 'queued for sending',
    state_sent: 'sent',
    state_not_on_io: 'the recipient does not use IO',
    state_not_allowed: 'the recipient does not accept messages from this service',
    state_failed: 'failed',
    state_in_doubt: 'to be checked',
    io_progress: '{recipients} recipients: {sent} sent, {not_on_io} not on IO, {failed} failed, {pending} pending.',
    dead_letters_title: 'Dead letters',
    dead_letters_text: 'Events a service could not process. Once the cause is fixed, replay them.',
    dead_caption: 'Waiting to be replayed',
    service: 'Service',
    queue_event: 'Queue and event',
    dead_reason: 'Reason',
    when: 'When',
    attempts: 'Attempts',
    replay: 'Replay',
    replayed: 'Dead letter {id} replayed into {queue}.',
    none_waiting: 'No dead letters waiting.',
    audit_title: 'Registry access log',
    audit_caption: 'Latest accesses (most recent first)',
    actor: 'Operator',
    action: 'Action',
    reference: 'Reference',
    reconciliation_title: 'Payment reconciliation',
    reconciliation_missing: 'The reconciliation report is not available on this gateway yet.',
    reconciliation_text: "The PSPs' reporting flows compared with the Comune's payment receipts.",
    fetch_flows: 'Ask the Nodo for new flows now',
    fetched_flows: 'The Nodo was asked.',
    section_reported: 'Reported',
    section_paid: 'Paid, not reported yet',
    section_missing: 'Reported but unknown',
    section_mismatched: 'Different amount',
    col_iuv: 'IUV',
    col_receipt_cents: 'Receipt amount',
    col_reported_cents: 'Reported amount',
    col_position_id: 'Position',
    col_flow_id: 'Flow',
  },
});

useSession('console');
let me = null;
const isAdmin = () => Boolean(me?.roles.includes('admin'));
const isOperator = () => Boolean(me?.roles.some((r) => r === 'operator' || r === 'admin'));
const input = (attrs) => h('input', { class: 'form-control', type: 'text', ...attrs });
const live = (id) => h('div', { 'aria-live': 'polite', id });
const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

async function catalogueFields(prefix) {
  const catalogue = await api(tenantPath('/certificates/catalogue'));
  const type = h('select', { class: 'form-select', name: 'certificate_type' },
    catalogue.types.map((c) => h('option', { value: c.id }, c.description)));
  const exemption = h('select', { class: 'form-select', name: 'exemption' },
    h('option', { value: '' }, t('no_exemption', { amount: money(catalogue.stamp_duty_cents) })),
    catalogue.exemptions.map((e) => h('option', { value: e.id }, e.description)));
  return { type, exemption, nodes: [field(`${prefix}-type`, t('certificate_type'), type),
    field(`${prefix}-exemption`, t('exemption'), exemption)] };
}

// -- views ----------------------------------------------------------------------------------------
async function home() {
  if (!me) {
    return h('section', {}, h('h1', {}, t('welcome_title')), h('p', { class: 'lead' }, t('welcome_text')), loginPanel());
  }
  if (!isOperator()) return h('section', {}, h('h1', {}, t('welcome_title')), alert('warning', t('not_operator')));
  const links = ['counter', 'lookup', 'positions', 'campaigns', 'messages', 'audit', 'reconciliation',
    ...(isAdmin() ? ['dead-letters'] : [])];
  return h('section', {}, h('h1', {}, t('home_title')), h('p', {}, t('roles', { roles: me.roles.join(', ') })),
    h('ul', { class: 'list-unstyled' }, links.map((r) => h('li', { class: 'mb-2' },
      h('a', { href: `#/${r}` }, t(`nav_${r.replace('-', '_')}`))))));
}

async function counter() {
  const result = live('counter-result');
  const fc = input({ name: 'fiscal_code', required: true, maxlength: 16, autocomplete: 'off' });
  const reason = input({ name: 'reason', required: true, maxlength: 200 });
  const requesterFc = input({ name: 'requester_fc', maxlength: 16, autocomplete: 'off' });
  const requesterSurname = input({ name: 'requester_surname', maxlength: 80 });
  const requesterName = input({ name: 'requester_name', maxlength: 80 });
  const use = input({ name: 'exemption_description', maxlength: 200 });
  const { type, exemption, nodes } = await catalogueFields('counter');
  const form = h('form', {
    id: 'counter-form',
    onsubmit: async (event) => {
      event.preventDefault();
      const body = { certificate_type: Number(type.value), fiscal_code: fc.value.trim().toUpperCase(),
        reason: reason.value.trim() };
      if (exemption.value) {
        body.exemption = Number(exemption.value);
        if (use.value.trim()) body.exemption_description = use.value.trim();
      }
      if (requesterFc.value.trim()) {
        body.requester = { fiscal_code: requesterFc.value.trim().toUpperCase(), surname: requesterSurname.value.trim(),
          name: requesterName.value.trim() };
      }
      try {
        const done = await api(tenantPath('/registry/certificates'), { method: 'POST', json: body });
        result.replaceChildren(alert('success', t('issued', { id: done.request_id, status: t(`status_${done.status}`) }),
          done.certificate ? ` ${done.certificate.verification_code}` : ''),
        done.status === 'issued' ? h('button', {
          type: 'button', class: 'btn btn-primary',
          onclick: () => download(tenantPath(`/certificates/${encodeURIComponent(done.request_id)}/document`),
            `certificato-${done.request_id}.pdf`),
        }, t('download_certificate')) : '');
      } catch (error) {
        result.replaceChildren(alert('danger', errorText(error)));
      }
    },
  }, field('counter-fc', t('subject_fc'), fc), ...nodes, field('counter-use', t('exemption_description'), use),
  field('counter-reason', t('reason'), reason, t('reason_help')),
  field('counter-requester-fc', t('requester_fc'), requesterFc),
  field('counter-requester-surname', t('requester_surname'), requesterSurname),
  field('counter-requester-name', t('requester_name'), requesterName),
  h('button', { type: 'submit', class: 'btn btn-primary' }, t('issue')));
  return h('section', {}, h('h1', {}, t('counter_title')), form, result);
}

async function lookup() {
  const result = live('lookup-result');
  const fc = input({ name: 'fiscal_code', required: true, maxlength: 16, autocomplete: 'off' });
  const reason = input({ name: 'reason', required: true, maxlength: 200 });
  const form = h('form', {
    id: 'lookup-form',
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        const r = await api(tenantPath('/registry/lookups'), {
          method: 'POST', json: { fiscal_code: fc.value.trim().toUpperCase(), reason: reason.value.trim() },
        });
        result.replaceChildren(table(t('resident_caption'), [t('fiscal_code'), t('surname'), t('name'),
          t('birth_date'), t('birth_place'), t('address'), t('residence_since')],
        [[r.fiscal_code, r.surname, r.name, date(r.birth_date), r.birth_place || '', r.address || '',
          date(r.residence_since)]]));
      } catch (error) {
        result.replaceChildren(alert('danger', errorText(error)));
      }
    },
  }, field('lookup-fc', t('fiscal_code'), fc), field('lookup-reason', t('reason'), reason, t('reason_help')),
  h('button', { type: 'submit', class: 'btn btn-primary' }, t('lookup')));
  return h('section', {}, h('h1', {}, t('lookup_title')), form, result);
}

function noticeButton(p) {
  return h('button', {
    type: 'button', class: 'btn btn-outline-primary btn-sm', 'aria-label': `${t('print_notice')}: ${p.notice_number}`,
    onclick: () => download(tenantPath(`/payments/positions/${encodeURIComponent(p.id)}/notice`),
      `avviso-${p.notice_number}.pdf`),
  }, t('print_notice'));
}

async function positions() {
  const result = live('position-result');
  const description = input({ name: 'description', required: true, maxlength: 140 });
  const amount = input({ name: 'amount', required: true, inputmode: 'decimal', pattern: '[0-9]+([.,][0-9]{1,2})?' });
  const due = input({ name: 'due_date', required: true, type: 'date' });
  const fc = input({ name: 'debtor_fc', required: true, maxlength: 16, autocomplete: 'off' });
  const fullName = input({ name: 'debtor_name', required: true, maxlength: 70 });
  const form = h('form', {
    id: 'position-form',
    onsubmit: async (event) => {
      event.preventDefault();
      const cents = Math.round(Number(amount.value.replace(',', '.')) * 100);
      try {
        const p = await api(tenantPath('/payments/positions'), {
          method: 'POST',
          json: { description: description.value.trim(), amount_cents: cents, due_date: due.value,
            debtor: { fiscal_code: fc.value.trim().toUpperCase(), full_name: fullName.value.trim() } },
        });
        result.replaceChildren(alert('success', t('created_position', { notice: p.notice_number })), noticeButton(p));
      } catch (error) {
        result.replaceChildren(alert('danger', errorText(error)));
      }
    },
  }, field('position-description', t('description'), description), field('position-amount', t('amount_eur'), amount),
  field('position-due', t('due_date'), due), field('position-fc', t('debtor_fc'), fc),
  field('position-name', t('debtor_name'), fullName),
  h('button', { type: 'submit', class: 'btn btn-primary' }, t('create')));
  const { items } = await api(`${tenantPath('/payments/positions')}?limit=20`);
  return h('section', {}, h('h1', {}, t('positions_title')), form, result,
    h('h2', { class: 'h4 mt-5' }, t('recent_positions')),
    table(t('recent_positions'), [t('description'), t('amount'), t('due_date'), t('notice_number'), t('status'),
      t('actions')], items.map((p) => [p.description, money(p.amount_cents), date(p.due_date),
      h('span', { class: 'sp-code' }, p.notice_number), p.status, noticeButton(p)])));
}

function progressBar(id) {
  const bar = h('div', {
    class: 'progress-bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': 0,
    'aria-labelledby': `${id}-label`, style: 'width: 0%',
  });
  const text = h('p', { id: `${id}-text`, 'aria-live': 'polite' });
  const node = h('div', { id, class: 'my-3' }, h('p', { id: `${id}-label`, class: 'fw-semibold mb-1' }, t('progress')),
    h('div', { class: 'progress sp-progress' }, bar), text);
  return {
    node,
    set(done, total) {
      const percent = total ? Math.round((100 * done) / total) : 100;
      bar.style.width = `${percent}%`;
      bar.setAttribute('aria-valuenow', String(percent));
      text.textContent = t('progress_text', { done, total });
    },
  };
}

async function followCampaign(campaignId, bar, out) {
  let progress;
  for (;;) {
    progress = await api(tenantPath(`/payments/campaigns/${encodeURIComponent(campaignId)}`));
    const c = progress.counts;
    bar.set(c.created + c.failed, progress.valid_rows);
    if (progress.status === 'done') {
      bar.node.querySelector('.progress-bar').classList.add('bg-success');
      break;
    }
    if (!document.body.contains(bar.node)) return;
    await sleep(700);
  }
  const report = await api(tenantPath(`/payments/campaigns/${encodeURIComponent(campaignId)}/report`));
  out.replaceChildren(alert('success', t('campaign_done')),
    table(t('report_caption'), [t('row'), t('outcome'), t('notice_number'), t('detail')],
      report.items.map((r) => [String(r.row), h('span', { dataset: { outcome: r.status } }, t(`outcome_${r.status}`)),
        r.notice_number ? h('span', { class: 'sp-code' }, r.notice_number) : '', r.error || ''])));
}

async function campaigns() {
  const result = live('campaign-result');
  const report = h('div', { id: 'campaign-report' });
  const name = input({ name: 'name', required: true, maxlength: 120 });
  const file = h('input', { class: 'form-control', type: 'file', name: 'csv', accept: '.csv,text/csv', required: true });
  const bar = progressBar('campaign-progress');
  bar.node.hidden = true;
  const form = h('form', {
    id: 'campaign-form',
    onsubmit: async (event) => {
      event.preventDefault();
      const chosen = file.files[0];
      if (!chosen) return;
      try {
        const uploaded = await api(`${tenantPath('/payments/campaigns')}?name=${encodeURIComponent(name.value.trim())}`, {
          method: 'POST', headers: { 'Content-Type': 'text/csv' }, body: await chosen.text(),
        });
        result.replaceChildren(alert('info', t('uploaded', { id: uploaded.campaign_id, valid: uploaded.valid_rows,
          total: uploaded.total_rows })));
        bar.node.hidden = false;
        bar.set(0, uploaded.valid_rows);
        await followCampaign(uploaded.campaign_id, bar, report);
      } catch (error) {
        result.replaceChildren(alert('danger', errorText(error)));
      }
    },
  }, field('campaign-name', t('campaign_name'), name), field('campaign-file', t('campaign_file'), file, t('campaign_help')),
  h('button', { type: 'submit', class: 'btn btn-primary' }, t('upload')));
  return h('section', {}, h('h1', {}, t('campaigns_title')), form, result, bar.node, report);
}

async function messages() {
  const single = live('message-result');
  const fc = input({ name: 'fiscal_code', required: true, maxlength: 16 });
  const subject = input({ name: 'subject', required: true, minlength: 10, maxlength: 120 });
  const text = h('textarea', { class: 'form-control', name: 'markdown', rows: 4, required: true, minlength: 80 });
  const messageForm = h('form', {
    id: 'message-form', class: 'mb-5',
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        const sent = await api(tenantPath('/messages'), { method: 'POST', json: {
          fiscal_code: fc.value.trim().toUpperCase(), subject: subject.value.trim(), markdown: text.value } });
        single.replaceChildren(alert('success', t('message_state', { id: sent.message_id, state: t(`state_${sent.state}`) })));
      } catch (error) {
        single.replaceChildren(alert('danger', errorText(error)));
      }
    },
  }, h('h2', { class: 'h4' }, t('message_title')), field('message-fc', t('fiscal_code'), fc),
  field('message-subject', t('subject'), subject), field('message-markdown', t('markdown'), text),
  h('button', { type: 'submit', class: 'btn btn-primary' }, t('send')), single);

  const many = live('io-campaign-result');
  const name = input({ name: 'name', required: true, maxlength: 120 });
  const cSubject = input({ name: 'subject', required: true, minlength: 10, maxlength: 120 });
  const cText = h('textarea', { class: 'form-control', name: 'markdown', rows: 4, required: true, minlength: 80 });
  const codes = h('textarea', { class: 'form-control', name: 'fiscal_codes', rows: 4, required: true });
  const campaignForm = h('form', {
    id: 'io-campaign-form',
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        const created = await api(tenantPath('/message-campaigns'), { method: 'POST', json: {
          name: name.value.trim(), subject: cSubject.value.trim(), markdown: cText.value,
          fiscal_codes: codes.value.split(/\s+/).map((c) => c.trim().toUpperCase()).filter(Boolean) } });
        for (let i = 0; i < 60; i += 1) {
          const p = await api(tenantPath(`/message-campaigns/${encodeURIComponent(created.campaign_id)}`));
          many.replaceChildren(alert(p.done ? 'success' : 'info', t('io_progress', { recipients: p.recipients, ...p.outcomes })));
          if (p.done || !document.body.contains(many)) break;
          await sleep(1000);
        }
      } catch (error) {
        many.replaceChildren(alert('danger', errorText(error)));
      }
    },
  }, h('h2', { class: 'h4' }, t('io_campaign_title')), field('io-campaign-name', t('campaign_name'), name),
  field('io-campaign-subject', t('subject'), cSubject), field('io-campaign-markdown', t('markdown'), cText),
  field('io-campaign-codes', t('recipients'), codes),
  h('button', { type: 'submit', class: 'btn btn-primary' }, t('send')), many);
  return h('section', {}, h('h1', {}, t('messages_title')), messageForm, campaignForm);
}

async function deadLetters(params) {
  const { items } = await api(tenantPath('/admin/dead-letters'));
  const done = params.get('replayed');
  const rows = items.map((d) => [
    d.service, h('div', {}, h('span', { class: 'sp-code' }, d.queue), h('br'), h('small', {}, d.event_type || '')),
    h('small', {}, d.reason), new Date(d.dead_lettered_at).toLocaleString(lang === 'en' ? 'en-GB' : 'it-IT'),
    String(d.attempts),
    h('button', {
      type: 'button', class: 'btn btn-primary btn-sm', 'aria-label': `${t('replay')}: ${d.service} ${d.id}`,
      dataset: { letter: `${d.service}:${d.id}` },
      onclick: async () => {
        try {
          const replayed = await api(tenantPath(`/admin/dead-letters/${encodeURIComponent(d.service)}/${d.id}/replay`),
            { method: 'POST' });
          await render(() => deadLetters(new URLSearchParams({ replayed: `${replayed.id}|${replayed.queue}` })),
            t('dead_letters_title'));
        } catch (error) {
          document.getElementById('dead-result').replaceChildren(alert('danger', errorText(error)));
        }
      },
    }, t('replay')),
  ]);
  const [id, queue] = (done || '').split('|');
  return h('section', {}, h('h1', {}, t('dead_letters_title')), h('p', {}, t('dead_letters_text')),
    h('div', { id: 'dead-result', 'aria-live': 'polite' }, done ? alert('success', t('replayed', { id, queue })) : null),
    items.length ? table(t('dead_caption'), [t('service'), t('queue_event'), t('dead_reason'), t('when'),
      t('attempts'), t('actions')], rows) : alert('info', t('none_waiting')));
}

async function audit() {
  const { entries } = await api(tenantPath('/registry/audit'));
  return h('section', {}, h('h1', {}, t('audit_title')),
    table(t('audit_caption'), [t('when'), t('actor'), t('action'), t('fiscal_code'), t('reason'), t('reference')],
      entries.map((e) => [new Date(e.at).toLocaleString(lang === 'en' ? 'en-GB' : 'it-IT'), e.actor, e.action, e.subject, e.reason, e.reference || ''])));
}

const SECTIONS = ['reported', 'paid', 'missing', 'mismatched'];

async function reconciliation(params) {
  let report;
  try {
    report = await api(tenantPath('/payments/reconciliation'));
  } catch (error) {
    if (error.status !== 404) throw error;
    return h('section', {}, h('h1', {}, t('reconciliation_title')), alert('info', t('reconciliation_missing')));
  }
  const fetched = params.get('fetched');
  const fetchButton = h('button', {
    type: 'button', class: 'btn btn-outline-primary mb-3', id: 'fetch-flows',
    onclick: async () => {
      try {
        const answer = await api(tenantPath('/payments/reporting-flows/fetch'), { method: 'POST' });
        await render(() => reconciliation(new URLSearchParams({ fetched: JSON.stringify(answer) })),
          t('reconciliation_title'));
      } catch (error) {
        document.getElementById('reconciliation-result').replaceChildren(alert('danger', errorText(error)));
      }
    },
  }, t('fetch_flows'));
  const cell = (key, value) => {
    if (value === null || value === undefined) return '';
    if (key.endsWith('_cents')) return money(value);
    if (typeof value === 'object') return JSON.stringify(value);
    return key === 'iuv' ? h('span', { class: 'sp-code' }, String(value)) : String(value);
  };
  const sections = SECTIONS.map((name) => {
    const lines = report[name] || [];
    const keys = lines.length ? Object.keys(lines[0]) : ['iuv', 'receipt_cents', 'reported_cents'];
    return h('div', { class: 'mb-4' },
      table(`${t(`section_${name}`)} (${report.counts?.[name] ?? lines.length})`, keys.map((k) => t(`col_${k}`)),
        lines.map((line) => keys.map((k) => cell(k, line[k])))));
  });
  return h('section', {}, h('h1', {}, t('reconciliation_title')), h('p', {}, t('reconciliation_text')),
    fetchButton, h('div', { id: 'reconciliation-result', 'aria-live': 'polite' },
      fetched ? alert('success', t('fetched_flows'), ` ${fetched}`) : null),
    h('dl', { class: 'row' }, SECTIONS.map((name) => [h('dt', { class: 'col-sm-3' }, t(`section_${name}`)),
      h('dd', { class: 'col-sm-9', dataset: { count: name } }, String(report.counts?.[name] ?? 0))])),
    ...sections);
}

const ROUTES = {
  '': home, counter, lookup, positions, campaigns, messages, 'dead-letters': deadLetters, audit, reconciliation,
};

function show() {
  const { name, params } = currentRoute();
  for (const item of document.querySelectorAll('[data-needs]')) {
    item.hidden = item.dataset.needs === 'admin' ? !isAdmin() : !isOperator();
  }
  const view = ROUTES[name] && (name === '' || isOperator()) ? ROUTES[name] : home;
  return render(() => view(params), t('tagline'));
}

startApp(show, (who) => { me = who; });
