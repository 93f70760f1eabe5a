// ledgerhook dashboard. Every page is a shell served by the binary; this file loads its data from
// the JSON API with the session cookie and sends its actions with the session's CSRF token.
// Rules kept throughout: data from the API only ever reaches the DOM as text (textContent, text
// nodes, attributes built from fixed prefixes), never as HTML; money and sizes stay the decimal
// strings the API sent (never parsed into floats); every failed call shows a message in the page.
'use strict';

(function () {
  const CSRF_HEADER = 'x-csrf-token';
  const REFRESH_MS = 5000;
  const FAST_REFRESH_MS = 1000;
  const FAST_REFRESH_TIMES = 20;
  const SIGNALS_PAGE = 50;

  /** The signed-in session (`GET /api/auth/session`), once a page has asked for it. */
  let session = null;

  class ApiFailure extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }

    describe() {
      return this.status ? `${this.message} (${this.code})` : this.message;
    }
  }

  /** One JSON API call. Resolves to the parsed body (null for an empty one), rejects with ApiFailure. */
  async function api(method, path, body) {
    const headers = { accept: 'application/json' };
    if (method !== 'GET' && session && session.csrf_token) {
      headers[CSRF_HEADER] = session.csrf_token;
    }
    const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (_) {
      throw new ApiFailure(0, 'NETWORK', 'The service could not be reached. Check your connection and try again.');
    }
    const text = await response.text();
    let json = null;
    if (text) {
      try {
        json = JSON.parse(text);
      } catch (_) {
        json = null;
      }
    }
    if (!response.ok) {
      const message = json && typeof json.error === 'string' ? json.error : `The service answered HTTP ${response.status}`;
      const code = json && typeof json.code === 'string' ? json.code : `HTTP_${response.status}`;
      throw new ApiFailure(response.status, code, message);
    }
    return json;
  }

  function describe(error) {
    return error instanceof ApiFailure ? error.describe() : String(error && error.message ? error.message : error);
  }

  // ---- DOM helpers: text only --------------------------------------------------------------

  function $(id) {
    return document.getElementById(id);
  }

  /** An element with text children (strings become text nodes) and plain attributes. */
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (name === 'text') node.textContent = String(value);
      else if (name === 'class') node.className = value;
      else node.setAttribute(name, String(value));
    }
    for (const child of children || []) {
      if (child !== undefined && child !== null) node.append(child);
    }
    return node;
  }

  function say(target, text, kind) {
    const node = typeof target === 'string' ? $(target) : target;
    if (!node) return;
    node.textContent = text;
    node.classList.remove('ok', 'error');
    if (kind) node.classList.add(kind);
  }

  function notice(text) {
    const node = $('notice');
    if (!node) return;
    node.textContent = text;
    node.hidden = false;
  }

  function text(value) {
    return value === undefined || value === null || value === '' ? '—' : String(value);
  }

  function time(value) {
    if (!value) return '—';
    const date = new Date(value);
    if (Number.isNaN(date.getTime())) return String(value);
    return date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z').replace('Z', ' UTC');
  }

  function signalLink(id) {
    if (!id) return '—';
    return el('a', { href: `/app/signals/${encodeURIComponent(id)}`, text: id, class: 'signal-link' });
  }

  function sideCell(side) {
    const value = text(side);
    return el('span', { class: `side-${value.toLowerCase()}`, text: value });
  }

  /** A table whose cells carry their column label (the phone layout shows it beside the value). */
  function table(columns, rows, id) {
    const head = el('tr', {}, columns.map((column) => el('th', { scope: 'col', text: column.label })));
    const body = el('tbody', {}, rows.map((row) => el('tr', {}, columns.map((column) => {
      const value = column.value(row);
      return el('td', { 'data-label': column.label, class: column.numeric ? 'num' : undefined },
        [value instanceof Node ? value : text(value)]);
    }))));
    return el('table', { id }, [el('thead', {}, [head]), body]);
  }

  function busy(button, during) {
    return async (...args) => {
      if (button.disabled) return;
      button.disabled = true;
      try {
        await during(...args);
      } finally {
        button.disabled = false;
      }
    };
  }

  // ---- session ------------------------------------------------------------------------------

  const STAFF_ROLES = ['compliance', 'operator'];

  /** The session, or null after sending the visitor to /login (401) or explaining the problem. */
  async function requireSession(roles) {
    try {
      session = await api('GET', '/api/auth/session');
    } catch (error) {
      if (error instanceof ApiFailure && error.status === 401) {
        window.location.replace('/login');
        return null;
      }
      notice(`Could not check your sign-in: ${describe(error)}`);
      return null;
    }
    if (!session || !roles.includes(session.role)) {
      const who = session && session.role ? session.role : 'unknown';
      notice(`This page is not for your role (${who}). ` +
        (STAFF_ROLES.includes(who) ? 'Staff pages: Audit, Operations.' : 'Your dashboard is at /app.'));
      return null;
    }
    return session;
  }

  function homeFor(role) {
    if (role === 'trader') return '/app';
    if (role === 'operator') return '/staff/operations';
    return '/staff/audit';
  }

  function wireSignOut() {
    const button = $('sign-out');
    if (!button) return;
    button.addEventListener('click', busy(button, async () => {
      try {
        await api('POST', '/api/auth/logout');
        window.location.assign('/login');
      } catch (error) {
        if (error instanceof ApiFailure && error.status === 401) {
          window.location.assign('/login');
          return;
        }
        notice(`Could not sign out: ${describe(error)}`);
      }
    }));
  }

  function markCurrentNav() {
    for (const link of document.querySelectorAll('.topbar nav a')) {
      if (link.getAttribute('href') === window.location.pathname) link.setAttribute('aria-current', 'page');
    }
  }

  // ---- clipboard -----------------------------------------------------------------------------

  async function copyText(value) {
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(value);
        return true;
      } catch (_) {
        // Denied (no focus, no permission): fall through to the selection copy.
      }
    }
    const area = el('textarea', { class: 'offscreen', readonly: '', 'aria-hidden': 'true' });
    area.value = value;
    document.body.append(area);
    area.select();
    let copied = false;
    try {
      copied = document.execCommand('copy');
    } catch (_) {
      copied = false;
    }
    area.remove();
    return copied;
  }

  function wireCopyButtons() {
    for (const button of document.querySelectorAll('button[data-copy-from]')) {
      const source = button.dataset.copyFrom;
      button.addEventListener('click', async () => {
        const status = document.querySelector(`[data-copy-status="${source}"]`);
        const value = $(source) ? $(source).textContent : '';
        if (!value) return;
        const copied = await copyText(value);
        if (status) {
          say(status, copied ? 'Copied' : 'Copy failed: select the text and copy it by hand', copied ? null : 'error');
        }
      });
    }
  }

  // ---- pages ---------------------------------------------------------------------------------

  const pages = {};

  pages.index = async () => {};

  pages.login = async () => {
    const walletButton = $('wallet-sign-in');
    walletButton.addEventListener('click', busy(walletButton, walletSignIn));
    const form = $('staff-form');
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      const submit = $('staff-sign-in');
      busy(submit, staffSignIn)();
    });
  };

  function utf8Hex(value) {
    const bytes = new TextEncoder().encode(value);
    return '0x' + Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
  }

  async function walletSignIn() {
    const provider = window.ethereum;
    if (!provider || typeof provider.request !== 'function') {
      say('wallet-status', 'No Ethereum wallet was found in this browser. Install a wallet extension ' +
        '(or open this page in your wallet app\'s browser) and try again.', 'error');
      return;
    }
    try {
      say('wallet-status', 'Asking your wallet for an address…');
      const accounts = await provider.request({ method: 'eth_requestAccounts' });
      const address = Array.isArray(accounts) ? accounts[0] : null;
      if (typeof address !== 'string') {
        say('wallet-status', 'Your wallet did not share an address.', 'error');
        return;
      }
      const challenge = await api('POST', '/api/auth/nonce', { address });
      say('wallet-status', 'Sign the message in your wallet…');
      const signature = await provider.request({
        method: 'personal_sign',
        params: [utf8Hex(challenge.message), address],
      });
      const signedIn = await api('POST', '/api/auth/verify', { message: challenge.message, signature });
      say('wallet-status', signedIn.created ? 'Account created. Opening your dashboard…' : 'Signed in. Opening your dashboard…', 'ok');
      window.location.assign(homeFor(signedIn.role));
    } catch (error) {
      if (error && error.code === 4001) {
        say('wallet-status', 'You declined the request in your wallet.', 'error');
        return;
      }
      say('wallet-status', `Sign-in failed: ${describe(error)}`, 'error');
    }
  }

  async function staffSignIn() {
    const login = $('staff-login').value;
    const password = $('staff-password').value;
    try {
      say('staff-status', 'Signing in…');
      const signedIn = await api('POST', '/api/auth/staff', { login, password });
      $('staff-password').value = '';
      say('staff-status', 'Signed in.', 'ok');
      window.location.assign(homeFor(signedIn.role));
    } catch (error) {
      say('staff-status', `Sign-in failed: ${describe(error)}`, 'error');
    }
  }

  // /app: webhook setup, test signal, positions, trades, signals.

  pages.app = async () => {
    if (!(await requireSession(['trader']))) return;
    wireCopyButtons();
    loadSetup();
    const testButton = $('send-test-signal');
    testButton.addEventListener('click', busy(testButton, sendTestSignal));
    $('refresh').addEventListener('click', () => refreshActivity());
    $('trades-more').addEventListener('click', () => loadTrades(true));
    $('signals-more').addEventListener('click', () => loadSignals(true));
    await refreshActivity();
    window.setInterval(() => {
      if (document.visibilityState === 'visible') refreshActivity();
    }, REFRESH_MS);
  };

  async function loadSetup() {
    try {
      const config = await api('GET', '/api/config/webhook');
      const setup = config.tradingview_setup || {};
      const twoFactor = setup.two_factor || {};
      if (!config.webhook_url) {
        say('setup-status', config.action_required || 'No webhook URL can be shown for this account.', 'error');
        return;
      }
      $('webhook-url').textContent = config.webhook_url;
      $('message-template').textContent = text(setup.message_template);
      $('two-factor-url').textContent = text(config.two_factor_url);
      $('two-factor-template').textContent = text(twoFactor.message_template);
      $('setup').hidden = false;
      say('setup-status', '');
    } catch (error) {
      say('setup-status', `Could not load your webhook setup: ${describe(error)}`, 'error');
    }
  }

  async function sendTestSignal() {
    try {
      say('test-signal-status', 'Sending…');
      const answer = await api('POST', '/api/settings/test-signal', {});
      const parts = ['Test signal sent'];
      if (answer && answer.status) parts.push(`: ${answer.status}`);
      if (answer && answer.signal_id) parts.push(` (signal ${answer.signal_id})`);
      say('test-signal-status', parts.join('') + '. It appears below once executed.', 'ok');
      let times = 0;
      const fast = window.setInterval(() => {
        times += 1;
        refreshActivity();
        if (times >= FAST_REFRESH_TIMES) window.clearInterval(fast);
      }, FAST_REFRESH_MS);
    } catch (error) {
      say('test-signal-status', `Could not send a test signal: ${describe(error)}`, 'error');
    }
  }

  let refreshing = false;

  async function refreshActivity() {
    if (refreshing) return;
    refreshing = true;
    try {
      await Promise.all([
        loadPositions(),
        expanded.trades ? null : loadTrades(false),
        expanded.signals ? null : loadSignals(false),
      ]);
    } finally {
      refreshing = false;
    }
  }

  async function loadPositions() {
    try {
      const answer = await api('GET', '/api/positions');
      const positions = (answer && answer.positions) || [];
      const container = $('positions');
      if (positions.length === 0) {
        container.replaceChildren();
        say('positions-status', 'No open positions.');
        return;
      }
      say('positions-status', '');
      container.replaceChildren(table([
        { label: 'Market', value: (p) => p.market },
        { label: 'Side', value: (p) => sideCell(p.side) },
        { label: 'Size', value: (p) => p.size, numeric: true },
        { label: 'Entry price', value: (p) => p.average_entry_price, numeric: true },
        { label: 'Realized PnL (USD)', value: (p) => p.realized_pnl_usd, numeric: true },
      ], positions, 'positions-table'));
    } catch (error) {
      say('positions-status', `Could not load positions: ${describe(error)}`, 'error');
    }
  }

  const older = { trades: null, signals: null };
  const shown = { trades: [], signals: [] };
  /** Whether the trader paged further back: a refresh then leaves that list as it is. */
  const expanded = { trades: false, signals: false };

  async function loadTrades(more) {
    const cursor = more ? older.trades : null;
    if (more && !cursor) return;
    try {
      const query = cursor ? `?cursor=${encodeURIComponent(cursor)}` : '';
      const answer = await api('GET', `/api/trades${query}`);
      const trades = (answer && answer.trades) || [];
      // A refresh shows the newest page again; older pages the trader asked for stay below it.
      shown.trades = more ? shown.trades.concat(trades) : trades;
      expanded.trades = more;
      older.trades = (answer && answer.next_cursor) || null;
      $('trades-more').hidden = !older.trades;
      if (shown.trades.length === 0) {
        $('trades').replaceChildren();
        say('trades-status', 'No trades yet.');
        return;
      }
      say('trades-status', '');
      $('trades').replaceChildren(table([
        { label: 'Filled', value: (t) => time(t.filled_at) },
        { label: 'Market', value: (t) => t.market },
        { label: 'Side', value: (t) => sideCell(t.side) },
        { label: 'Size', value: (t) => t.size, numeric: true },
        { label: 'Price', value: (t) => t.price, numeric: true },
        { label: 'Fee (USD)', value: (t) => t.fee_usd, numeric: true },
        { label: 'Signal', value: (t) => signalLink(t.signal_id) },
      ], shown.trades, 'trades-table'));
    } catch (error) {
      say('trades-status', `Could not load trades: ${describe(error)}`, 'error');
    }
  }

  async function loadSignals(more) {
    const cursor = more ? older.signals : null;
    if (more && !cursor) return;
    try {
      const params = new URLSearchParams({ limit: String(SIGNALS_PAGE) });
      if (cursor) params.set('cursor', cursor);
      const answer = await api('GET', `/api/signals?${params}`);
      const signals = (answer && answer.signals) || [];
      shown.signals = more ? shown.signals.concat(signals) : signals;
      expanded.signals = more;
      older.signals = (answer && answer.next_cursor) || null;
      $('signals-more').hidden = !older.signals;
      if (shown.signals.length === 0) {
        $('signals').replaceChildren();
        say('signals-status', 'No signals yet. Send a test signal or wait for your first alert.');
        return;
      }
      say('signals-status', '');
      $('signals').replaceChildren(table([
        { label: 'Received', value: (s) => time(s.received_at) },
        { label: 'Market', value: (s) => s.market || s.symbol },
        { label: 'Status', value: (s) => el('span', { class: 'badge', text: text(s.status) }) },
        { label: 'Outcome', value: (s) => text(s.outcome) },
        { label: 'Signal', value: (s) => signalLink(s.signal_id) },
      ], shown.signals, 'signals-table'));
    } catch (error) {
      say('signals-status', `Could not load signals: ${describe(error)}`, 'error');
    }
  }

  // /app/signals/{id}: the signal and every event of its story.

  pages.signal = async () => {
    if (!(await requireSession(['trader']))) return;
    const prefix = '/app/signals/';
    const path = window.location.pathname;
    let id = '';
    try {
      id = decodeURIComponent(path.slice(prefix.length));
    } catch (_) {
      id = '';
    }
    if (!path.startsWith(prefix) || !id) {
      say('signal-status', 'This address names no signal.', 'error');
      say('story-status', '');
      return;
    }
    $('signal-title').textContent = `Signal ${id}`;
    const encoded = encodeURIComponent(id);
    loadSignalSummary(encoded);
    loadStory(encoded);
  };

  async function loadSignalSummary(encoded) {
    try {
      const signal = await api('GET', `/api/signals/${encoded}`);
      const rows = [
        ['Status', signal.status],
        ['Outcome', signal.outcome],
        ['Market', signal.market],
        ['Received', time(signal.received_at)],
        ['Updated', time(signal.updated_at)],
        ['Detail', signal.detail],
        ['Duplicates', signal.duplicates],
      ];
      $('signal-summary').replaceChildren(...rows.flatMap(([label, value]) =>
        [el('dt', { text: label }), el('dd', { text: text(value) })]));
      say('signal-status', '');
    } catch (error) {
      say('signal-status', `Could not load this signal: ${describe(error)}`, 'error');
    }
  }

  async function loadStory(encoded) {
    try {
      const story = await api('GET', `/api/signals/${encoded}/story`);
      const events = (story && story.events) || [];
      if (events.length === 0) {
        say('story-status', 'No events recorded for this signal yet.');
        return;
      }
      say('story-status', `${events.length} event${events.length === 1 ? '' : 's'}.`);
      $('story').replaceChildren(...events.map((event) => {
        const head = el('div', { class: 'event-head' }, [
          el('span', { class: 'event-type', text: text(event.event_type) }),
          el('span', { class: 'event-meta', text: `#${text(event.sequence)} · ${time(event.recorded_at)}` }),
        ]);
        const payload = event.payload === undefined ? null
          : el('pre', { class: 'payload', text: JSON.stringify(event.payload, null, 2) });
        return el('li', { 'data-event-type': text(event.event_type) }, [head, payload]);
      }));
    } catch (error) {
      say('story-status', `Could not load this signal's story: ${describe(error)}`, 'error');
    }
  }

  // /app/settings: venue, write-only credentials, limits, webhook rotation, test notification.

  pages.settings = async () => {
    if (!(await requireSession(['trader']))) return;
    wireSettingsForms();
    await loadSettings();
  };

  let currentLimits = {};

  async function loadSettings() {
    let settings;
    try {
      settings = await api('GET', '/api/settings');
      say('settings-status', '');
    } catch (error) {
      say('settings-status', `Could not load your settings: ${describe(error)}`, 'error');
      return;
    }
    const venue = settings && (settings.venue && settings.venue.name ? settings.venue.name : settings.venue);
    if (typeof venue === 'string') $('venue').value = venue;
    renderCredentials(settings ? settings.credentials : null);
    renderLimits(settings ? settings.limits || settings.risk_limits : null, settings);
  }

  /** `credentials` as `{field: masked-or-null}` or `[{field, masked|set}]`: both are shown. */
  function credentialEntries(credentials) {
    if (Array.isArray(credentials)) {
      return credentials.map((entry) => [entry.field || entry.name, entry.masked || (entry.set ? 'set' : null)]);
    }
    if (credentials && typeof credentials === 'object') {
      return Object.entries(credentials).map(([field, value]) => {
        if (value && typeof value === 'object') return [field, value.masked || (value.set ? 'set' : null)];
        return [field, value];
      });
    }
    return [];
  }

  function renderCredentials(credentials) {
    const entries = credentialEntries(credentials).filter(([field]) => typeof field === 'string');
    const container = $('credentials');
    if (entries.length === 0) {
      container.replaceChildren(el('p', { class: 'hint', text: 'No credentials can be set for this account.' }));
      return;
    }
    container.replaceChildren(...entries.map(([field, masked]) => {
      const input = el('input', {
        type: 'password', name: 'value', autocomplete: 'off', required: '', maxlength: '4096',
        'aria-label': `New value for ${field}`, placeholder: 'New value',
      });
      const form = el('form', { 'data-field': field }, [input, el('button', { type: 'submit', text: 'Save' })]);
      form.addEventListener('submit', (event) => {
        event.preventDefault();
        saveCredential(field, input);
      });
      return el('div', { class: 'credential' }, [
        el('span', { class: 'label', text: field.replace(/_/g, ' ') }),
        el('span', { class: 'masked', text: masked ? String(masked) : 'not set' }),
        form,
      ]);
    }));
  }

  async function saveCredential(field, input) {
    try {
      await api('PUT', `/api/settings/credentials/${encodeURIComponent(field)}`, { value: input.value });
      input.value = '';
      say('credentials-status', `Saved ${field.replace(/_/g, ' ')}.`, 'ok');
      await loadSettings();
    } catch (error) {
      say('credentials-status', `Could not save ${field}: ${describe(error)}`, 'error');
    }
  }

  /** A per-market map (`{"BTC-USD": "0.5"}`) as the text a person edits: `BTC-USD=0.5, ETH-USD=2`. */
  function perMarketText(map) {
    return Object.entries(map).map(([market, size]) => `${market}=${size}`).join(', ');
  }

  /** `BTC-USD=0.5, ETH-USD=2` back into a map; markets no longer named are lifted (`null`). */
  function perMarketMap(textValue, before) {
    const map = {};
    for (const market of Object.keys(before)) map[market] = null;
    for (const part of textValue.split(',')) {
      const [market, size] = part.split('=').map((piece) => (piece || '').trim());
      if (market) map[market.toUpperCase()] = size === '' || size === undefined ? null : size;
    }
    return map;
  }

  function renderLimits(limits, settings) {
    const container = $('limits');
    currentLimits = limits && typeof limits === 'object' ? limits : {};
    const entries = Object.entries(currentLimits);
    if (entries.length === 0) {
      container.replaceChildren(el('p', { class: 'hint', text: 'No limits could be read.' }));
      return;
    }
    const fields = entries.map(([name, value]) => {
      const perMarket = value !== null && typeof value === 'object' && !Array.isArray(value);
      const shownValue = Array.isArray(value) ? value.join(',')
        : perMarket ? perMarketText(value)
          : value === null || value === undefined ? '' : String(value);
      const input = el('input', {
        name, value: shownValue, autocomplete: 'off',
        placeholder: perMarket ? 'MARKET=SIZE, … (none: no limit)' : 'no limit',
      });
      return el('label', {}, [name.replace(/_/g, ' '), input]);
    });
    if (settings && settings.default_order_usd !== undefined) {
      const own = settings.default_order_usd_is_own === true;
      fields.push(el('label', {}, ['default order usd (an alert without a size)', el('input', {
        name: 'default_order_usd', id: 'default-order-usd', autocomplete: 'off',
        value: own ? String(settings.default_order_usd) : '',
        placeholder: `service default: ${settings.default_order_usd}`,
      })]));
    }
    container.replaceChildren(...fields);
  }

  function limitsFromForm() {
    const limits = {};
    for (const input of $('limits').querySelectorAll('input')) {
      const value = input.value.trim();
      if (input.name === 'default_order_usd') {
        limits.default_order_usd = value === '' ? null : value;
        continue;
      }
      const before = currentLimits[input.name];
      if (Array.isArray(before)) limits[input.name] = value ? value.split(',').map((part) => part.trim()).filter(Boolean) : [];
      else if (before !== null && typeof before === 'object') limits[input.name] = perMarketMap(value, before);
      else if (typeof before === 'number') limits[input.name] = value === '' ? null : Number(value);
      else if (typeof before === 'boolean') limits[input.name] = value === 'true';
      else limits[input.name] = value === '' ? null : value;
    }
    return limits;
  }

  function wireSettingsForms() {
    $('venue-form').addEventListener('submit', async (event) => {
      event.preventDefault();
      try {
        await api('PUT', '/api/settings/venue', { venue: $('venue').value });
        say('venue-status', 'Venue saved.', 'ok');
      } catch (error) {
        say('venue-status', `Could not save the venue: ${describe(error)}`, 'error');
      }
    });
    $('limits-form').addEventListener('submit', async (event) => {
      event.preventDefault();
      try {
        await api('PUT', '/api/settings/limits', limitsFromForm());
        say('limits-status', 'Limits saved.', 'ok');
        await loadSettings();
      } catch (error) {
        say('limits-status', `Could not save the limits: ${describe(error)}`, 'error');
      }
    });
    const rotate = $('rotate-webhook');
    rotate.addEventListener('click', busy(rotate, async () => {
      if (!window.confirm('Rotate your webhook credentials? Alerts using the old URL will be refused from now on.')) return;
      try {
        await api('POST', '/api/settings/webhook/rotate');
        say('rotate-status', 'Rotated. Your new URL and template are on the dashboard; update your TradingView alerts.', 'ok');
      } catch (error) {
        say('rotate-status', `Could not rotate: ${describe(error)}`, 'error');
      }
    }));
    const notify = $('test-notification');
    notify.addEventListener('click', busy(notify, async () => {
      try {
        const answer = await api('POST', '/api/settings/test-notification');
        say('notification-status', `Test notification ${answer && answer.status ? answer.status : 'sent'}.`, 'ok');
      } catch (error) {
        say('notification-status', `Could not send a test notification: ${describe(error)}`, 'error');
      }
    }));
  }

  // /staff/audit: search with filters, export, verify.

  const AUDIT_PATH = '/api/compliance/audit';
  let auditCursor = null;

  pages.audit = async () => {
    if (!(await requireSession(['compliance', 'operator']))) return;
    const form = $('audit-form');
    form.addEventListener('input', updateExportLinks);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      searchAudit(false);
    });
    $('audit-more').addEventListener('click', () => searchAudit(true));
    const verify = $('audit-verify');
    verify.addEventListener('click', busy(verify, verifyAudit));
    updateExportLinks();
    if (session.role !== 'compliance') {
      say('audit-status', 'Searching and exporting the trail is for compliance staff; verification is open to all staff.');
    }
  };

  /** The filters as query parameters, or a message naming the one that cannot be read. */
  function auditFilters() {
    const params = new URLSearchParams();
    const value = (id) => $(id).value.trim();
    if (value('filter-account')) params.set('account_id', value('filter-account'));
    if (value('filter-signal')) params.set('signal_id', value('filter-signal'));
    if (value('filter-event-type')) params.set('event_type', value('filter-event-type').replace(/\s+/g, ''));
    for (const [id, name] of [['filter-from', 'from'], ['filter-to', 'to']]) {
      if (!value(id)) continue;
      // datetime-local is the viewer's local time; the API takes RFC 3339.
      const date = new Date(value(id));
      if (Number.isNaN(date.getTime())) return { error: `The ${name} time is not a valid date.` };
      params.set(name, date.toISOString());
    }
    return { params };
  }

  function updateExportLinks() {
    const { params } = auditFilters();
    for (const [id, format] of [['export-csv', 'csv'], ['export-jsonl', 'jsonl']]) {
      const query = new URLSearchParams(params || {});
      query.set('format', format);
      $(id).setAttribute('href', `${AUDIT_PATH}?${query}`);
    }
  }

  let auditRows = [];

  async function searchAudit(more) {
    const { params, error } = auditFilters();
    if (error) {
      say('audit-status', error, 'error');
      return;
    }
    const limit = $('filter-limit').value.trim();
    if (limit) params.set('limit', limit);
    if (more && auditCursor) params.set('cursor', auditCursor);
    say('audit-status', 'Searching…');
    try {
      const answer = await api('GET', `${AUDIT_PATH}?${params}`);
      const rows = (answer && answer.rows) || [];
      auditRows = more ? auditRows.concat(rows) : rows;
      auditCursor = answer ? answer.next_cursor || null : null;
      $('audit-more').hidden = !auditCursor;
      say('audit-status', auditRows.length === 0 ? 'No audit rows match these filters.'
        : `${auditRows.length} row${auditRows.length === 1 ? '' : 's'}${auditCursor ? ' (more on the next page)' : ''}.`,
      auditRows.length === 0 ? null : 'ok');
      $('audit-rows').replaceChildren(auditRows.length === 0 ? '' : table([
        { label: 'Position', value: (r) => r.position, numeric: true },
        { label: 'Recorded', value: (r) => time(r.recorded_at) },
        { label: 'Account', value: (r) => r.account_id },
        { label: 'Seq', value: (r) => r.sequence, numeric: true },
        { label: 'Event', value: (r) => r.event_type },
        { label: 'Signal', value: (r) => r.signal_id },
        { label: 'Payload', value: (r) => el('details', {}, [el('summary', { text: 'show' }), el('pre', { class: 'payload', text: prettyJson(r.payload) })]) },
        { label: 'Hash', value: (r) => el('code', { title: text(r.hash), text: text(r.hash).slice(0, 12) }) },
      ], auditRows, 'audit-table'));
    } catch (failure) {
      say('audit-status', `Could not search the audit trail: ${describe(failure)}`, 'error');
    }
  }

  function prettyJson(raw) {
    if (typeof raw !== 'string') return JSON.stringify(raw, null, 2);
    try {
      return JSON.stringify(JSON.parse(raw), null, 2);
    } catch (_) {
      return raw;
    }
  }

  async function verifyAudit() {
    say('verify-status', 'Asking…');
    try {
      const answer = await api('GET', `${AUDIT_PATH}/verify`);
      const status = answer && answer.status;
      if (status === 'verified') say('verify-status', 'Verified: the audit trail is intact.', 'ok');
      else if (status === 'failed') say('verify-status', 'Verification FAILED: the audit trail was altered or is incomplete.', 'error');
      else say('verify-status', (answer && answer.message) || 'The first verification has not finished yet; try again shortly.');
      const rows = Object.entries(answer || {})
        .filter(([, value]) => value === null || typeof value !== 'object')
        .map(([name, value]) => [name.replace(/_/g, ' '), name.endsWith('_at') ? time(value) : text(value)]);
      $('verify-summary').replaceChildren(...rows.flatMap(([label, value]) =>
        [el('dt', { text: label }), el('dd', { text: value })]));
    } catch (error) {
      say('verify-status', `Could not verify: ${describe(error)}`, 'error');
    }
  }

  // /staff/operations: emergency stop and per-account halts.

  pages.operations = async () => {
    if (!(await requireSession(['operator']))) return;
    wireOperatorForm('stop-form', 'stop-status', () => ({ reason: $('stop-reason').value.trim() }));
    wireOperatorForm('account-form', 'account-status', () => ({
      user_id: $('account-user').value.trim(),
      reason: $('account-reason').value.trim(),
    }));
  };

  function wireOperatorForm(formId, statusId, body) {
    const form = $(formId);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const action = event.submitter && event.submitter.value === 'resume' ? 'resume' : 'halt';
      const request = body();
      const scope = request.user_id ? `account ${request.user_id}` : 'every account';
      if (action === 'halt' && !window.confirm(`Halt trading for ${scope}?`)) return;
      try {
        const answer = await api('POST', `/api/operator/${action}`, request);
        const detail = answer && answer.status ? ` (${answer.status})` : '';
        say(statusId, `${action === 'halt' ? 'Halted' : 'Resumed'} ${scope}${detail}.`, 'ok');
      } catch (error) {
        say(statusId, `Could not ${action} ${scope}: ${describe(error)}`, 'error');
      }
    });
  }

  // ---- start -----------------------------------------------------------------------------------

  document.addEventListener('DOMContentLoaded', () => {
    markCurrentNav();
    wireSignOut();
    const start = pages[document.body.dataset.page];
    if (start) {
      start().catch((error) => notice(`This page failed to start: ${describe(error)}`));
    }
  });
})();
