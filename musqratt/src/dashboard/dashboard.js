// MusQraTT's dashboard (docs/OBSERVABILITY.md): numbers from /api/v1/stats and
// /api/v1/clients, plots drawn on <canvas>, and an MQTT 5.0 client over the broker's WebSocket
// listener whose packets are encoded and decoded by musqratt-proto compiled to WebAssembly
// (/musqratt.wasm, the musqratt-wasm crate; docs/adr/0020-dashboard-wasm.md). This file is the
// module's thin glue: it moves bytes between the WebSocket and the module's buffers.
'use strict';

const $ = (id) => document.getElementById(id);
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const HISTORY = 120; // points on the plots: two minutes at one a second
const state = {
  connected: false, // the publish/subscribe client has its CONNACK
  stats: null, last: null, rates: [], latency: [], latencyQos: 0,
  topics: new Map(), treeDirty: false, messages: [],
};
window.dashboard = state; // for the browser test and the curious

// ---- The MQTT client: one instance of the module per connection (its own buffers). ----

const PACKET = { CONNACK: 2, PUBLISH: 3, PUBACK: 4, SUBACK: 9, PINGRESP: 13, DISCONNECT: 14 };

class MqttClient {
  constructor(instance, url, clientId, onMessage) {
    this.x = instance.exports;
    this.url = url;
    this.clientId = clientId;
    this.onMessage = onMessage;
    this.nextId = 1;
    this.waiting = new Map(); // packet id -> resolve of SUBACK / PUBACK
    this.onConnect = () => {};
    this.onClose = () => {};
  }

  static async create(module, url, clientId, onMessage) {
    const instance = await WebAssembly.instantiate(module, {});
    return new MqttClient(instance, url, clientId, onMessage);
  }

  // Copies `bytes` into the module's input buffer (after `input`, which may grow memory).
  put(bytes) {
    const at = this.x.input(bytes.length);
    new Uint8Array(this.x.memory.buffer, at, bytes.length).set(bytes);
  }

  output(len) {
    return new Uint8Array(this.x.memory.buffer, this.x.output(), len).slice();
  }

  send(len) {
    if (len < 0) throw new Error('packet could not be encoded');
    this.ws.send(this.output(len));
  }

  packetId() {
    const id = this.nextId;
    this.nextId = this.nextId >= 65535 ? 1 : this.nextId + 1;
    return id;
  }

  open() {
    this.x.reset();
    this.ws = new WebSocket(this.url, 'mqtt');
    this.ws.binaryType = 'arraybuffer';
    this.ws.onopen = () => {
      const id = encoder.encode(this.clientId);
      this.put(id);
      this.send(this.x.connect(id.length, 60));
    };
    this.ws.onmessage = (event) => this.receive(new Uint8Array(event.data));
    this.ws.onclose = () => {
      clearInterval(this.ping);
      this.onClose();
    };
  }

  receive(bytes) {
    this.put(bytes);
    this.x.feed(bytes.length);
    for (;;) {
      const type = this.x.next();
      if (type === 0) return;
      if (type < 0) { this.ws.close(); return; }
      this.handle(type);
    }
  }

  handle(type) {
    switch (type) {
      case PACKET.CONNACK:
        if (this.x.reason() !== 0) { this.ws.close(); return; }
        this.ping = setInterval(() => this.send(this.x.pingreq()), 30000);
        this.onConnect();
        break;
      case PACKET.PUBLISH: {
        const all = this.output(this.x.output_len());
        const topicLen = this.x.topic_len();
        const topic = decoder.decode(all.subarray(0, topicLen));
        const payload = all.subarray(topicLen);
        const [qos, id, retained] = [this.x.qos_of(), this.x.packet_id(), this.x.retained()];
        if (qos === 1) this.send(this.x.puback(id));
        this.onMessage(topic, payload, retained === 1);
        break;
      }
      case PACKET.SUBACK:
      case PACKET.PUBACK: {
        const resolve = this.waiting.get(this.x.packet_id());
        this.waiting.delete(this.x.packet_id());
        if (resolve) resolve(this.x.reason());
        break;
      }
      default:
        break;
    }
  }

  // Resolves with the SUBACK's reason code (0, 1: granted QoS; 0x80 and up: refused).
  subscribe(filter, qos) {
    const id = this.packetId();
    const bytes = encoder.encode(filter);
    this.put(bytes);
    const done = new Promise((resolve) => this.waiting.set(id, resolve));
    this.send(this.x.subscribe(bytes.length, qos, id));
    return done;
  }

  // Resolves when the broker has the message: its PUBACK's reason code at QoS 1, 0 at QoS 0.
  publish(topic, payload, qos, retain) {
    const t = encoder.encode(topic);
    const p = encoder.encode(payload);
    const both = new Uint8Array(t.length + p.length);
    both.set(t);
    both.set(p, t.length);
    this.put(both);
    const id = qos > 0 ? this.packetId() : 0;
    const done = qos > 0 ? new Promise((resolve) => this.waiting.set(id, resolve))
      : Promise.resolve(0);
    this.send(this.x.publish(t.length, p.length, qos, id, retain ? 1 : 0));
    return done;
  }
}

// ---- Plots: line charts drawn on a canvas, no library. ----

function drawChart(canvas, series, unit) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const g = canvas.getContext('2d');
  g.scale(ratio, ratio);
  g.clearRect(0, 0, width, height);
  const style = getComputedStyle(document.documentElement);
  const left = 56;
  const bottom = height - 18;
  let max = 1;
  for (const s of series) for (const v of s.data) if (v !== null && v > max) max = v;
  max = niceCeiling(max);
  g.font = '11px system-ui, sans-serif';
  g.fillStyle = style.getPropertyValue('--dim');
  g.strokeStyle = style.getPropertyValue('--line');
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = 6 + (bottom - 6) * (1 - i / 4);
    g.beginPath(); g.moveTo(left, y); g.lineTo(width - 6, y); g.stroke();
    g.fillText(formatNumber(max * i / 4) + unit, 2, y + 4);
  }
  g.fillText(`last ${HISTORY} s`, left, height - 4);
  const step = (width - 6 - left) / (HISTORY - 1);
  for (const s of series) {
    g.strokeStyle = style.getPropertyValue(s.color);
    g.lineWidth = 2;
    g.beginPath();
    let drawing = false;
    const offset = HISTORY - s.data.length;
    s.data.forEach((v, i) => {
      if (v === null) { drawing = false; return; }
      const x = left + (offset + i) * step;
      const y = 6 + (bottom - 6) * (1 - v / max);
      if (drawing) g.lineTo(x, y); else g.moveTo(x, y);
      drawing = true;
    });
    g.stroke();
  }
}

function niceCeiling(v) {
  const magnitude = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * magnitude) return m * magnitude;
  return 10 * magnitude;
}

function formatNumber(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(v % 1e6 ? 1 : 0) + 'M';
  if (v >= 1e3) return (v / 1e3).toFixed(v % 1e3 ? 1 : 0) + 'k';
  return String(Math.round(v * 10) / 10);
}

function formatDuration(s) {
  const d = Math.floor(s / 86400); const h = Math.floor(s / 3600) % 24;
  const m = Math.floor(s / 60) % 60;
  return (d ? d + 'd ' : '') + (d || h ? h + 'h ' : '') + (d || h || m ? m + 'm ' : '') + (s % 60) + 's';
}

// ---- Numbers: /api/v1/stats every second, /api/v1/clients every two. ----

const sum = (values) => values.reduce((a, b) => a + b, 0);

async function pollStats() {
  try {
    const stats = await (await fetch('/api/v1/stats')).json();
    const now = performance.now();
    if (state.last) {
      const dt = (now - state.last.at) / 1000;
      const rin = (sum(stats.messages.received) - sum(state.last.stats.messages.received)) / dt;
      const rout = (sum(stats.messages.sent) - sum(state.last.stats.messages.sent)) / dt;
      push(state.rates, [Math.max(rin, 0), Math.max(rout, 0)]);
      $('rate-in').textContent = formatNumber(Math.max(rin, 0));
      $('rate-out').textContent = formatNumber(Math.max(rout, 0));
    }
    // The busiest QoS's percentiles (each QoS has its own histogram).
    const qos = [0, 1, 2].reduce((a, q) =>
      (stats.latency['qos' + q].count > stats.latency['qos' + a].count ? q : a), 0);
    const l = stats.latency['qos' + qos];
    state.latencyQos = qos;
    $('latency-qos').textContent = `QoS ${qos} deliveries (the busiest), since the start: ` +
      'from a PUBLISH handed to the engine to its delivery handed to the socket';
    push(state.latency, [l.p50_us, l.p99_us]);
    state.last = { at: now, stats };
    state.stats = stats;
    $('version').textContent = stats.version;
    $('uptime').textContent = formatDuration(stats.uptime_s);
    $('clients-count').textContent = stats.clients.connected;
    $('retained').textContent = stats.retained;
    $('queued').textContent = stats.queued.messages;
    $('sn').textContent = `${stats.mqtt_sn.peers} peers, ${stats.mqtt_sn.sleeping} asleep`;
    drawChart($('rates'), [
      { color: '--in', data: state.rates.map((r) => r[0]) },
      { color: '--out', data: state.rates.map((r) => r[1]) },
    ], '');
    drawChart($('latency'), [
      { color: '--p50', data: state.latency.map((r) => r[0]) },
      { color: '--p99', data: state.latency.map((r) => r[1]) },
    ], ' µs');
    if (!state.client) startMqtt(stats.websocket);
  } catch (error) {
    console.warn('stats:', error);
  }
}

function push(list, value) {
  list.push(value);
  if (list.length > HISTORY) list.shift();
}

async function pollClients() {
  try {
    const page = await (await fetch('/api/v1/clients?limit=100')).json();
    const body = $('clients').tBodies[0];
    body.replaceChildren(...page.clients.map((c) => {
      const row = document.createElement('tr');
      for (const value of [c.client_id, c.username ?? '', c.peer ?? '', c.protocol,
        formatDuration(c.connected_for_s) + ' ago', c.queued]) {
        const cell = document.createElement('td');
        cell.textContent = value;
        cell.title = value;
        row.append(cell);
      }
      return row;
    }));
    $('clients-note').textContent = page.total > page.clients.length
      ? `(first ${page.clients.length} of ${page.total})` : `(${page.total})`;
  } catch (error) {
    console.warn('clients:', error);
  }
}

// ---- Publish, subscribe and the topic tree, over the WebSocket listener. ----

let wasm; // the compiled module, instantiated once per connection

async function startMqtt(ws) {
  if (!ws) {
    $('ws-status').innerHTML = '<span class="notice">no WebSocket listener configured: add ' +
      '"ws://127.0.0.1:8083/mqtt" to <code>listeners</code> to publish and subscribe here</span>';
    $('tree').innerHTML = '<span class="notice">needs a WebSocket listener</span>';
    state.client = 'none';
    return;
  }
  state.client = 'starting';
  const host = ws.host ?? location.hostname;
  const url = `${ws.scheme}://${host.includes(':') ? '[' + host + ']' : host}:${ws.port}${ws.path}`;
  wasm = wasm ?? await WebAssembly.compileStreaming(fetch('/musqratt.wasm'));
  const suffix = Math.random().toString(36).slice(2, 8);
  // Two connections: the tree's (every topic) and the box's (what the user subscribed to),
  // so that a message matching both is shown once in each.
  const tree = await MqttClient.create(wasm, url, 'dashboard-tree-' + suffix, onTreeMessage);
  const box = await MqttClient.create(wasm, url, 'dashboard-' + suffix, onBoxMessage);
  state.client = box;
  tree.onConnect = async () => {
    await tree.subscribe('#', 0);
    await tree.subscribe('$SYS/#', 0);
    state.treeReady = true;
  };
  box.onConnect = () => {
    state.connected = true;
    $('ws-status').textContent = `connected to ${url} as ${box.clientId}`;
    $('sub-button').disabled = false;
    $('pub-button').disabled = false;
  };
  for (const client of [tree, box]) {
    client.onClose = () => {
      state.connected = false;
      $('ws-status').textContent = `${url}: closed, reconnecting in 3 s`;
      $('sub-button').disabled = true;
      $('pub-button').disabled = true;
      setTimeout(() => client.open(), 3000);
    };
    client.open();
  }
  $('ws-status').textContent = `connecting to ${url}…`;
}

function text(payload) {
  const s = decoder.decode(payload);
  return s.length > 80 ? s.slice(0, 80) + '…' : s;
}

function onTreeMessage(topic, payload, retained) {
  const known = state.topics.get(topic);
  // A retained message stays marked until an empty one deletes it (MQTT-3.3.1-6).
  const keep = retained ? payload.length > 0 : (known?.retained ?? false);
  state.topics.set(topic, { payload: text(payload), retained: keep });
  state.treeDirty = true;
}

function onBoxMessage(topic, payload, retained) {
  const item = document.createElement('li');
  item.textContent = `${new Date().toLocaleTimeString()}  ${topic}  ${text(payload)}` +
    (retained ? '  (retained)' : '');
  $('messages').prepend(item);
  while ($('messages').children.length > 100) $('messages').lastChild.remove();
}

function renderTree() {
  if (!state.treeDirty) return;
  state.treeDirty = false;
  const root = new Map();
  for (const topic of [...state.topics.keys()].sort()) {
    let level = root;
    const parts = topic.split('/');
    parts.forEach((part, i) => {
      if (!level.has(part)) level.set(part, { children: new Map(), topic: null });
      const node = level.get(part);
      if (i === parts.length - 1) node.topic = topic;
      level = node.children;
    });
  }
  const list = (level) => {
    const ul = document.createElement('ul');
    ul.className = 'tree';
    for (const [name, node] of level) {
      const li = document.createElement('li');
      li.append(name || '(empty)');
      if (node.topic !== null) {
        const t = state.topics.get(node.topic);
        if (t.retained) {
          const mark = document.createElement('span');
          mark.className = 'retained';
          mark.textContent = '★';
          mark.title = 'retained';
          li.append(mark);
          li.dataset.retained = node.topic;
        }
        const p = document.createElement('span');
        p.className = 'payload';
        p.textContent = t.payload;
        li.append(p);
      }
      if (node.children.size) li.append(list(node.children));
      ul.append(li);
    }
    return ul;
  };
  $('tree').replaceChildren(list(root));
}

$('sub-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const filter = $('sub-filter').value;
  const code = await state.client.subscribe(filter, Number($('sub-qos').value));
  $('sub-status').textContent = code < 0x80 ? `subscribed to ${filter}`
    : `subscription to ${filter} refused (0x${code.toString(16)})`;
});

$('pub-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const topic = $('pub-topic').value;
  const code = await state.client.publish(topic, $('pub-payload').value,
    Number($('pub-qos').value), $('pub-retain').checked);
  $('sub-status').textContent = code < 0x80 ? `published to ${topic}`
    : `publish to ${topic} refused (0x${code.toString(16)})`;
});

pollStats();
pollClients();
setInterval(pollStats, 1000);
setInterval(pollClients, 2000);
setInterval(renderTree, 1000);
