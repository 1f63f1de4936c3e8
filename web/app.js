// The sockeye chat page. Plain browser JavaScript, no build step: the server embeds this file
// and serves socket.io-client beside it at /vendor/socket.io.min.js (the global `io`).
//
// Events used (docs/PROTOCOL.md):
//   identity          io({ auth: { username } }) in development mode, io({ auth: { token } })
//                     in token mode; refusals arrive as connect_error with err.data { code, message }
//   presence          getOnlineUsers [names] (seed 001), or online [names] (seed 004) if the
//                     first is switched off
//   rooms (seed 003)  GET /api/rooms, room created, create room, join room, message history,
//                     chat message, typing, user joined room, user left room
//   private (001)     sendMessage { receiverId, message } with ack, newMessage,
//                     GET /api/messages/:user for the conversation so far
//   errors            acks { success: false, error, code } and error { code, message } events
//
// Every piece of user text reaches the page through textContent or a data-* attribute, never
// through innerHTML; the page's Content-Security-Policy forbids inline script as a second wall.
(function () {
  'use strict';

  const ACK_TIMEOUT_MS = 10000;
  const TYPING_SEND_EVERY_MS = 1000; // at most one `typing` per room per second while typing
  const TYPING_SHOW_MS = 3000; // how long someone shows as typing after their last `typing`
  const NAME_KEY = 'sockeye.username';

  const $ = (id) => document.getElementById(id);
  const ui = {
    who: $('who'),
    me: $('me'),
    status: $('conn-status'),
    logout: $('logout'),
    banner: $('error-banner'),
    bannerText: $('error-text'),
    bannerClose: $('error-close'),
    login: $('login'),
    nameForm: $('login-name-form'),
    username: $('login-username'),
    tokenForm: $('login-token-form'),
    token: $('login-token'),
    loginError: $('login-error'),
    chat: $('chat'),
    roomList: $('room-list'),
    createRoomForm: $('create-room-form'),
    createRoomName: $('create-room-name'),
    createRoomError: $('create-room-error'),
    onlineList: $('online-list'),
    onlineCount: $('online-count'),
    dmSection: $('dm-section'),
    dmList: $('dm-list'),
    title: $('conversation-title'),
    messages: $('messages'),
    typing: $('typing-indicator'),
    sendForm: $('send-form'),
    input: $('message-input'),
    sendButton: $('send-button'),
    sendError: $('send-error'),
  };

  /** Everything the page knows; reset on logout. */
  let state = freshState();

  function freshState() {
    return {
      socket: null,
      auth: null, // { username } or { token }
      me: null, // our user name, when known
      connected: false,
      everConnected: false,
      rooms: new Map(), // room id -> { id, name, createdAt, joined, unread }
      online: [], // user names, in the server's order
      convs: new Map(), // 'room:<id>' or 'dm:<user>' -> conversation
      current: null, // key into convs
      typing: new Map(), // room id -> Map(user -> timer)
      typingSentAt: new Map(), // room id -> time of our last `typing`
      sawGetOnlineUsers: false, // then seed 004's `online` list is ignored
      bannerTimer: null,
    };
  }

  // ---------------------------------------------------------------- small helpers

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (value === undefined || value === null) continue;
        if (key === 'text') node.textContent = String(value);
        else if (key === 'className') node.className = value;
        else if (key === 'dataset') Object.assign(node.dataset, value);
        else if (key === 'onclick') node.addEventListener('click', value);
        else node.setAttribute(key, String(value));
      }
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  function setError(node, text) {
    node.textContent = text || '';
    show(node, Boolean(text));
  }

  function showBanner(text) {
    ui.bannerText.textContent = text;
    show(ui.banner, true);
    clearTimeout(state.bannerTimer);
    state.bannerTimer = setTimeout(() => show(ui.banner, false), 10000);
  }

  /** "sentence (code)" from an ack, an error event, or an HTTP error body. */
  function describe(err, fallback) {
    if (!err || typeof err !== 'object') return fallback;
    const inner = err.error && typeof err.error === 'object' ? err.error : err;
    const message = typeof inner.message === 'string' ? inner.message
      : typeof inner.error === 'string' ? inner.error
        : fallback;
    return inner.code ? `${message} (${inner.code})` : message;
  }

  function str(value) {
    return typeof value === 'string' ? value : value === undefined || value === null ? '' : String(value);
  }

  function timeLabel(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return '';
    return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  /** The name a JWT claims (username, name, then sub), for display only; the server decides. */
  function nameFromToken(token) {
    try {
      const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const bytes = Uint8Array.from(atob(part.padEnd(Math.ceil(part.length / 4) * 4, '=')), (c) => c.charCodeAt(0));
      const claims = JSON.parse(new TextDecoder().decode(bytes));
      for (const key of ['username', 'name', 'sub']) {
        if (typeof claims[key] === 'string' && claims[key].trim()) return claims[key].trim();
      }
    } catch (_) {
      // Not a readable JWT: the server will say so through connect_error.
    }
    return null;
  }

  async function api(path) {
    const headers = { Accept: 'application/json' };
    if (state.auth && state.auth.token) headers.Authorization = `Bearer ${state.auth.token}`;
    const response = await fetch(path, { headers, cache: 'no-store' });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      // Fall through with body null.
    }
    if (!response.ok) throw new Error(describe(body, `${path}: HTTP ${response.status}`));
    return body;
  }

  // ---------------------------------------------------------------- conversations

  function roomKey(id) { return `room:${id}`; }
  function dmKey(user) { return `dm:${user}`; }

  function conv(key) {
    let c = state.convs.get(key);
    if (!c) {
      const [kind, ...rest] = key.split(':');
      c = { key, kind, target: rest.join(':'), messages: [], ids: new Set(), unread: 0, loaded: false };
      state.convs.set(key, c);
    }
    return c;
  }

  function roomMessage(m) {
    return { id: str(m._id), user: str(m.user), text: str(m.text), time: str(m.timestamp) };
  }

  function privateMessage(m) {
    return { id: str(m._id), user: str(m.senderId), text: str(m.message), time: str(m.createdAt) };
  }

  /** Adds messages to a conversation, once each, in time order; returns how many were new. */
  function addMessages(c, list) {
    let added = 0;
    let outOfOrder = false;
    for (const m of list) {
      if (m.id && c.ids.has(m.id)) continue;
      if (m.id) c.ids.add(m.id);
      const last = c.messages[c.messages.length - 1];
      if (last && m.time && last.time && m.time < last.time) outOfOrder = true;
      c.messages.push(m);
      added += 1;
    }
    if (outOfOrder) c.messages.sort((a, b) => (a.time < b.time ? -1 : a.time > b.time ? 1 : 0));
    if (added === 0) return 0;
    if (state.current === c.key) {
      if (outOfOrder || added > 1) renderMessages();
      else appendMessageNode(c.messages[c.messages.length - 1], true);
    } else if (list.length === 1 && !list[0].system && list[0].user !== state.me) {
      c.unread += added;
      renderLists();
    }
    return added;
  }

  function systemLine(c, text) {
    const line = { system: true, text, time: new Date().toISOString() };
    c.messages.push(line);
    if (state.current === c.key) appendMessageNode(line, true);
  }

  function messageNode(m) {
    if (m.system) {
      return el('li', { className: 'system', 'data-testid': 'system-message', text: m.text });
    }
    const mine = state.me !== null && m.user === state.me;
    return el('li', { className: mine ? 'message mine' : 'message', 'data-testid': 'message', dataset: { id: m.id, user: m.user } },
      el('div', { className: 'meta' },
        el('span', { className: 'user', 'data-testid': 'message-user', text: m.user || 'anonymous' }),
        el('time', { className: 'time', datetime: m.time, text: timeLabel(m.time) })),
      el('p', { className: 'text', 'data-testid': 'message-text', text: m.text }));
  }

  function nearBottom() {
    const box = ui.messages;
    return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  }

  function appendMessageNode(m, keepScroll) {
    const stick = nearBottom() || (m.user && m.user === state.me);
    ui.messages.append(messageNode(m));
    if (keepScroll && stick) ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function renderMessages() {
    const c = state.current && state.convs.get(state.current);
    ui.messages.replaceChildren(...(c ? c.messages.map(messageNode) : []));
    ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function select(key) {
    const c = conv(key);
    state.current = key;
    c.unread = 0;
    if (c.kind === 'room') {
      const room = state.rooms.get(c.target);
      ui.title.textContent = `# ${room ? room.name : c.target}`;
      ui.title.dataset.kind = 'room';
    } else {
      ui.title.textContent = `@ ${c.target}`;
      ui.title.dataset.kind = 'dm';
    }
    ui.title.dataset.key = key;
    setError(ui.sendError, '');
    updateComposer();
    renderMessages();
    renderTyping();
    renderLists();
    ui.input.focus();
  }

  function updateComposer() {
    const c = state.current && state.convs.get(state.current);
    let usable = Boolean(c) && state.connected;
    if (usable && c.kind === 'room') {
      const room = state.rooms.get(c.target);
      usable = Boolean(room && room.joined);
    }
    ui.input.disabled = !usable;
    ui.sendButton.disabled = !usable;
    ui.input.placeholder = !c ? 'Pick a room or a user'
      : c.kind === 'room' ? `Message # ${state.rooms.get(c.target)?.name ?? ''}` : `Message @ ${c.target}`;
  }

  // ---------------------------------------------------------------- lists

  function badge(count) {
    return count > 0 ? el('span', { className: 'badge', 'data-testid': 'unread', text: count }) : null;
  }

  function renderLists() {
    const roomItems = [];
    for (const room of state.rooms.values()) {
      const key = roomKey(room.id);
      const c = state.convs.get(key);
      roomItems.push(el('li', {
        'data-testid': 'room',
        dataset: { roomId: room.id, roomName: room.name, joined: String(room.joined) },
        className: state.current === key ? 'active' : null,
      }, el('button', { type: 'button', className: 'item', onclick: () => openRoom(room.id), text: `# ${room.name}` }),
      badge(c ? c.unread : 0)));
    }
    ui.roomList.replaceChildren(...roomItems);

    const onlineItems = state.online.map((user) => {
      const self = user === state.me;
      const key = dmKey(user);
      const c = state.convs.get(key);
      const label = self ? `${user} (you)` : user;
      const button = self
        ? el('span', { className: 'item self', text: label })
        : el('button', { type: 'button', className: 'item', title: `Private messages with ${user}`, onclick: () => openDm(user), text: label });
      return el('li', {
        'data-testid': 'online-user',
        dataset: { user },
        className: state.current === key ? 'active' : null,
      }, button, badge(c ? c.unread : 0));
    });
    ui.onlineList.replaceChildren(...onlineItems);
    ui.onlineCount.textContent = String(state.online.length);
    renderDmList();
  }

  /** Private conversations with users who are not in the online list any more. */
  function renderDmList() {
    const offline = [...state.convs.values()].filter((c) => c.kind === 'dm' && !state.online.includes(c.target));
    show(ui.dmSection, offline.length > 0);
    ui.dmList.replaceChildren(...offline.map((c) => el('li', {
      'data-testid': 'dm-conversation', dataset: { user: c.target }, className: state.current === c.key ? 'active' : null,
    }, el('button', { type: 'button', className: 'item', onclick: () => openDm(c.target), text: c.target }), badge(c.unread))));
  }

  function setOnline(list) {
    if (!Array.isArray(list)) return;
    state.online = list.filter((u) => typeof u === 'string' && u !== '');
    renderLists();
  }

  function addRoom(r) {
    if (!r || typeof r._id !== 'string' || typeof r.name !== 'string') return null;
    let room = state.rooms.get(r._id);
    if (!room) {
      room = { id: r._id, name: r.name, createdAt: str(r.createdAt), joined: false, joining: null };
      state.rooms.set(room.id, room);
      renderLists();
    }
    return room;
  }

  async function loadRooms() {
    try {
      const rooms = await api('/api/rooms');
      if (Array.isArray(rooms)) rooms.forEach(addRoom);
    } catch (err) {
      showBanner(`Could not load the rooms: ${err.message}`);
    }
  }

  // ---------------------------------------------------------------- actions

  /** emit with an ack, bounded: resolves to the ack, or { success: false, error } on timeout. */
  function request(event, payload) {
    return new Promise((resolve) => {
      if (!state.socket) {
        resolve({ success: false, error: 'Not connected' });
        return;
      }
      state.socket.timeout(ACK_TIMEOUT_MS).emit(event, payload, (err, ack) => {
        if (err) resolve({ success: false, error: `No answer from the server within ${ACK_TIMEOUT_MS / 1000} s` });
        else if (ack && typeof ack === 'object') resolve(ack);
        else resolve({ success: false, error: `Unexpected answer: ${JSON.stringify(ack)}` });
      });
    });
  }

  /** Joins once: a second call while the first is under way shares its answer. */
  function joinRoom(room) {
    if (!room.joining) {
      room.joining = requestJoin(room).finally(() => { room.joining = null; });
    }
    return room.joining;
  }

  async function requestJoin(room) {
    const ack = await request('join room', { roomId: room.id, user: state.me ?? undefined });
    if (ack.success !== true) {
      showBanner(`Could not join # ${room.name}: ${describe(ack, 'refused')}`);
      return false;
    }
    room.joined = true;
    if (Array.isArray(ack.history)) addMessages(conv(roomKey(room.id)), ack.history.map(roomMessage));
    renderLists();
    updateComposer();
    return true;
  }

  async function openRoom(id) {
    const room = state.rooms.get(id);
    if (!room) return;
    select(roomKey(id));
    if (!room.joined) await joinRoom(room);
  }

  async function openDm(user) {
    const c = conv(dmKey(user));
    select(c.key);
    if (c.loaded) return;
    c.loaded = true;
    const query = state.auth && state.auth.username ? `?user=${encodeURIComponent(state.me)}` : '';
    try {
      const history = await api(`/api/messages/${encodeURIComponent(user)}${query}`);
      if (Array.isArray(history)) addMessages(c, history.map(privateMessage));
    } catch (err) {
      c.loaded = false;
      showBanner(`Could not load the conversation with ${user}: ${err.message}`);
    }
  }

  async function send(text) {
    const c = state.current && state.convs.get(state.current);
    if (!c) return;
    setError(ui.sendError, '');
    let ack;
    if (c.kind === 'room') {
      ack = await request('chat message', { roomId: c.target, user: state.me ?? undefined, text });
      if (ack.success === true && ack.message) addMessages(c, [roomMessage(ack.message)]);
    } else {
      ack = await request('sendMessage', { receiverId: c.target, message: text });
      if (ack.success === true) addMessages(c, [privateMessage(ack)]);
    }
    if (ack.success !== true) {
      setError(ui.sendError, `Not sent: ${describe(ack, 'refused by the server')}`);
      if (!ui.input.value) ui.input.value = text;
      return;
    }
    state.typingSentAt.delete(c.target);
  }

  function sendTyping() {
    const c = state.current && state.convs.get(state.current);
    if (!c || c.kind !== 'room' || !state.connected) return;
    const now = Date.now();
    if (now - (state.typingSentAt.get(c.target) || 0) < TYPING_SEND_EVERY_MS) return;
    state.typingSentAt.set(c.target, now);
    state.socket.emit('typing', { roomId: c.target, user: state.me ?? undefined });
  }

  // ---------------------------------------------------------------- typing indicator

  function someoneTyping(roomId, user) {
    if (!roomId || !user || user === state.me) return;
    let users = state.typing.get(roomId);
    if (!users) {
      users = new Map();
      state.typing.set(roomId, users);
    }
    clearTimeout(users.get(user));
    users.set(user, setTimeout(() => stoppedTyping(roomId, user), TYPING_SHOW_MS));
    renderTyping();
  }

  function stoppedTyping(roomId, user) {
    const users = state.typing.get(roomId);
    if (!users || !users.has(user)) return;
    clearTimeout(users.get(user));
    users.delete(user);
    renderTyping();
  }

  function renderTyping() {
    const c = state.current && state.convs.get(state.current);
    const users = c && c.kind === 'room' ? [...(state.typing.get(c.target)?.keys() ?? [])] : [];
    ui.typing.dataset.users = users.join('\n');
    ui.typing.textContent = users.length === 0 ? ''
      : users.length === 1 ? `${users[0]} is typing…`
        : users.length === 2 ? `${users[0]} and ${users[1]} are typing…`
          : `${users.length} people are typing…`;
  }

  // ---------------------------------------------------------------- connection

  function setStatus(stateName, label) {
    ui.status.dataset.state = stateName;
    ui.status.textContent = label;
  }

  function connect(auth) {
    disconnect();
    state = freshState();
    state.auth = auth;
    state.me = auth.username ?? nameFromToken(auth.token);
    setError(ui.loginError, '');
    setFormsBusy(true);

    const socket = io({ auth, reconnectionDelayMax: 5000 });
    state.socket = socket;

    socket.on('connect', () => {
      const first = !state.everConnected;
      state.connected = true;
      state.everConnected = true;
      setStatus('online', 'online');
      if (first) enterChat();
      loadRooms().then(() => {
        if (first) {
          const general = [...state.rooms.values()].find((r) => r.name === 'general');
          if (general && !state.current) openRoom(general.id);
        }
      });
      if (!first) {
        // The server forgot our rooms with the old connection: join them again.
        for (const room of state.rooms.values()) {
          if (room.joined) {
            room.joined = false;
            joinRoom(room);
          }
        }
        state.typing.clear();
        renderTyping();
      }
      updateComposer();
    });

    socket.on('connect_error', (err) => {
      const data = err && typeof err.data === 'object' && err.data ? err.data : {};
      const code = typeof data.code === 'string' ? data.code : null;
      const message = typeof data.message === 'string' ? data.message : str(err && err.message) || 'connection failed';
      const text = code ? `${message} (${code})` : message;
      if (!state.everConnected) {
        // Refused at login, or the server cannot be reached: back to the form.
        setError(ui.loginError, `Could not connect: ${text}`);
        disconnect();
        setFormsBusy(false);
        return;
      }
      if (!socket.active) {
        // Refused on reconnection (say, the token expired): no more retries.
        showBanner(`Disconnected: ${text}`);
        logout(`Disconnected: ${text}`);
        return;
      }
      setStatus('reconnecting', 'reconnecting…');
    });

    socket.on('disconnect', (reason) => {
      state.connected = false;
      updateComposer();
      if (reason === 'io client disconnect') return;
      if (reason === 'io server disconnect') {
        logout('The server closed the connection.');
        return;
      }
      setStatus('reconnecting', 'reconnecting…');
    });

    socket.on('getOnlineUsers', setOnline);
    socket.on('online', (list) => {
      // seed 004's list; used only if the server does not send getOnlineUsers.
      if (!state.sawGetOnlineUsers) setOnline(list);
    });
    socket.prependAny((event) => {
      if (event === 'getOnlineUsers') state.sawGetOnlineUsers = true;
    });

    socket.on('room created', (room) => addRoom(room));

    socket.on('message history', (list) => {
      if (!Array.isArray(list)) return;
      for (const m of list) {
        if (m && typeof m.room === 'string') addMessages(conv(roomKey(m.room)), [roomMessage(m)]);
      }
    });

    socket.on('chat message', (m) => {
      // Objects with a room are seed 003 messages; seed 004's strings and DM records belong
      // to clients of that design and are not shown here.
      if (!m || typeof m !== 'object' || typeof m.room !== 'string') return;
      const message = roomMessage(m);
      stoppedTyping(m.room, message.user);
      addMessages(conv(roomKey(m.room)), [message]);
    });

    socket.on('typing', (t) => {
      if (t && typeof t === 'object') someoneTyping(str(t.roomId), str(t.user));
    });

    socket.on('user joined room', (e) => {
      if (!e || typeof e !== 'object' || !e.user || e.user === state.me) return;
      const c = state.convs.get(roomKey(str(e.roomId)));
      if (c) systemLine(c, `${str(e.user)} joined`);
    });

    socket.on('user left room', (e) => {
      if (!e || typeof e !== 'object' || !e.user || e.user === state.me) return;
      stoppedTyping(str(e.roomId), str(e.user));
      const c = state.convs.get(roomKey(str(e.roomId)));
      if (c) systemLine(c, `${str(e.user)} left`);
    });

    socket.on('newMessage', (m) => {
      if (!m || typeof m !== 'object') return;
      const message = privateMessage(m);
      // A message we sent from another tab names us as the sender: file it under the peer.
      const peer = message.user === state.me ? str(m.receiverId) : message.user;
      if (!peer) return;
      const c = conv(dmKey(peer));
      addMessages(c, [message]);
      renderLists();
    });

    socket.on('error', (e) => {
      showBanner(`Server error: ${describe(e, typeof e === 'string' ? e : 'unknown error')}`);
    });
  }

  function disconnect() {
    if (state.socket) {
      state.socket.removeAllListeners();
      state.socket.disconnect();
      state.socket = null;
    }
    for (const users of state.typing.values()) for (const timer of users.values()) clearTimeout(timer);
    state.connected = false;
  }

  function enterChat() {
    setFormsBusy(false);
    show(ui.login, false);
    show(ui.chat, true);
    show(ui.who, true);
    ui.me.textContent = state.me ?? 'token user';
    if (state.auth.username) {
      try { localStorage.setItem(NAME_KEY, state.auth.username); } catch (_) { /* private mode */ }
    }
    renderLists();
    updateComposer();
  }

  function logout(reason) {
    disconnect();
    state = freshState();
    show(ui.chat, false);
    show(ui.who, false);
    show(ui.login, true);
    setFormsBusy(false);
    setError(ui.loginError, reason || '');
    ui.messages.replaceChildren();
    ui.title.textContent = 'Pick a room or a user';
    ui.typing.textContent = '';
    setStatus('offline', 'offline');
  }

  function setFormsBusy(busy) {
    for (const form of [ui.nameForm, ui.tokenForm]) {
      for (const control of form.elements) control.disabled = busy;
    }
  }

  // ---------------------------------------------------------------- wiring

  ui.nameForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const username = ui.username.value.trim();
    if (!username) {
      setError(ui.loginError, 'Enter a name.');
      return;
    }
    connect({ username });
  });

  ui.tokenForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const token = ui.token.value.trim();
    if (!token) {
      setError(ui.loginError, 'Paste a token.');
      return;
    }
    connect({ token });
  });

  ui.logout.addEventListener('click', () => logout(''));
  ui.bannerClose.addEventListener('click', () => show(ui.banner, false));

  ui.createRoomForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = ui.createRoomName.value.trim();
    if (!name) return;
    setError(ui.createRoomError, '');
    const ack = await request('create room', { name });
    if (ack.success !== true || !ack.room) {
      setError(ui.createRoomError, describe(ack, 'The room was not created'));
      return;
    }
    ui.createRoomName.value = '';
    const room = addRoom(ack.room);
    if (room) openRoom(room.id);
  });

  ui.sendForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = ui.input.value;
    if (!text.trim()) return;
    ui.input.value = '';
    send(text);
  });

  ui.input.addEventListener('input', () => {
    if (ui.input.value.trim()) sendTyping();
  });

  try {
    ui.username.value = localStorage.getItem(NAME_KEY) || '';
  } catch (_) {
    // Storage can be off; the form simply starts empty.
  }
  if (typeof io !== 'function') {
    setError(ui.loginError, 'socket.io-client did not load from /vendor/socket.io.min.js (run `npm ci` in web/).');
    setFormsBusy(true);
  }
})();
