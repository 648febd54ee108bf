// liveagent browser client: mic -> WebSocket (PCM16), WebSocket -> speaker, transcripts,
// tool calls and per-turn latency. Protocol: docs/transports.md (version 1).
'use strict';

const $ = (id) => document.getElementById(id);
// Test-visible state: plain values only (no live objects).
const voice = (window.voice = {
  status: 'idle', contextState: null, contextRate: 0, conversationId: null,
  framesSent: 0, framesReceived: 0, interrupts: 0, playedSamples: 0, playedMs: 0,
  flushedSamples: 0, lastFlush: null, latencies: [], transcript: [], tools: [], errors: [],
  // Resuming after a dropped connection: sockets opened, conversations resumed, whether a
  // reconnection is pending, and why resuming was refused (if it was).
  connections: 0, resumes: 0, reconnecting: false, resumeFailed: null,
});
const live = (window.voiceInternals = {});

function setStatus(s) { voice.status = s; $('status').textContent = s; }

function addLine(role, text, key) {
  const box = $('transcript');
  let el = key ? box.querySelector(`[data-key="${CSS.escape(key)}"]`) : null;
  if (!el) {
    el = document.createElement('div');
    el.className = `line ${role}`;
    if (key) el.dataset.key = key;
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = role === 'user' ? 'You' : role === 'assistant' ? 'Agent' : '';
    el.append(who, document.createElement('span'));
    box.append(el);
  }
  return el;
}

function transcript(role, itemId, text, isFinal) {
  const key = `${role}:${itemId || 'anon-' + voice.transcript.length}`;
  const el = addLine(role, '', itemId ? key : null);
  const span = el.lastChild;
  span.textContent = isFinal ? text : span.textContent + text;
  let entry = voice.transcript.find((t) => t.key === key);
  if (!entry) { entry = { key, role, text: '' }; voice.transcript.push(entry); }
  entry.text = span.textContent;
  $('transcript').scrollTop = 1e9;
}

// The model's words can arrive twice for one item: as `text` (the model's words) and as an
// assistant `transcript` (of its audio). Show whichever source speaks first for an item.
const wordSource = new Map();
function assistantWords(kind, itemId, text, isFinal) {
  if (itemId) {
    const first = wordSource.get(itemId);
    if (first && first !== kind) return;
    wordSource.set(itemId, kind);
  }
  transcript('assistant', itemId, text, isFinal);
}

function system(text) { addLine('system', '').lastChild.textContent = text; }

function send(obj) {
  if (live.ws && live.ws.readyState === WebSocket.OPEN) live.ws.send(JSON.stringify(obj));
}

// The conversation to resume if the socket drops: { conversation_id, token } from `ready`.
let resumeInfo = null;
// Set when the user ended the conversation, or the server ended it for good.
let finished = false;
let retryTimer = null;
let attempt = 0;
// Close codes after which the page reconnects and resumes: the instance went away (1001,
// 1006 abnormal, 1012 restart, 1013 try again later) or nothing was said (1005).
const RESUMABLE_CLOSES = new Set([1001, 1005, 1006, 1012, 1013, 1014]);
// Errors after which the conversation is over (no resuming).
const FINAL_ERRORS = new Set(['resume_failed', 'resume_unsupported', 'bad_frame', 'audio_too_fast', 'frame_too_large', 'conversation_failed']);

async function start() {
  $('start').disabled = true;
  setStatus('starting');
  finished = false;
  resumeInfo = null;
  attempt = 0;
  try {
    let ctx;
    try { ctx = new AudioContext({ sampleRate: 24000, latencyHint: 'interactive' }); }
    catch (_) { ctx = new AudioContext({ latencyHint: 'interactive' }); }
    live.ctx = ctx;
    await ctx.resume();
    voice.contextState = ctx.state;
    voice.contextRate = ctx.sampleRate;
    await ctx.audioWorklet.addModule(new URL('worklet.js', location.href));
    const mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
    });
    live.mic = mic;
    const capture = new AudioWorkletNode(ctx, 'capture', {
      processorOptions: { frameSamples: Math.round(ctx.sampleRate / 50) },
    });
    const player = new AudioWorkletNode(ctx, 'player', { outputChannelCount: [1] });
    const sink = ctx.createGain();
    sink.gain.value = 0; // the capture node must be pulled, but stays silent
    ctx.createMediaStreamSource(mic).connect(capture).connect(sink).connect(ctx.destination);
    player.connect(ctx.destination);
    live.player = player;
    live.latencyFrom = null;

    capture.port.onmessage = (e) => {
      const ws = live.ws;
      if (live.ready && ws && ws.readyState === WebSocket.OPEN && ws.bufferedAmount < 1 << 20) {
        ws.send(e.data);
        voice.framesSent++;
      }
    };
    player.port.onmessage = (e) => {
      const m = e.data;
      if (m.type === 'played') {
        send(m);
        if (m.state === 'flushed') voice.lastFlush = { item_id: m.item_id, samples: m.samples };
      } else if (m.type === 'flushed') {
        voice.flushedSamples += m.samples;
      } else if (m.type === 'started' && live.latencyFrom !== null) {
        const ms = Math.round(performance.now() - live.latencyFrom);
        live.latencyFrom = null;
        voice.latencies.push(ms);
        const d = document.createElement('div');
        d.textContent = `turn ${voice.latencies.length}: ${ms} ms`;
        $('latency').prepend(d);
      }
    };
    // Played samples, summed over items, for the page's own display and tests.
    const played = new Map();
    player.port.addEventListener('message', (e) => {
      if (e.data.type === 'played' && e.data.item_id) {
        played.set(e.data.item_id, e.data.samples);
        voice.playedSamples = [...played.values()].reduce((a, b) => a + b, 0);
        voice.playedMs = Math.round((voice.playedSamples * 1000) / ctx.sampleRate);
      }
    });
    connect();
  } catch (err) {
    setStatus(`error: ${err && err.message ? err.message : err}`);
    $('start').disabled = false;
  }
}

// Opens the socket; with `resumeInfo`, the hello asks to resume that conversation (on
// whichever instance the load balancer picks).
function connect() {
  const ctx = live.ctx;
  const player = live.player;
  // Every handler is attached before the socket can open.
  const url = new URL('ws', location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = location.search;
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  live.ws = ws;
  live.ready = false;
  voice.connections++;
  let currentItem = null;

  ws.onopen = () => {
    const hello = { type: 'hello', protocol: 1, input_rate: ctx.sampleRate, output_rate: ctx.sampleRate };
    if (resumeInfo) {
      hello.conversation_id = resumeInfo.conversation_id;
      hello.resume_token = resumeInfo.token;
    }
    ws.send(JSON.stringify(hello));
  };
  ws.onmessage = (e) => {
    if (ws !== live.ws) return;
    if (typeof e.data !== 'string') {
      voice.framesReceived++;
      const pcm = new Int16Array(e.data);
      player.port.postMessage({ type: 'audio', item: currentItem, pcm }, [pcm.buffer]);
      return;
    }
    const m = JSON.parse(e.data);
    switch (m.type) {
      case 'ready':
        live.ready = true;
        attempt = 0;
        voice.reconnecting = false;
        voice.conversationId = m.conversation_id;
        resumeInfo = m.resume_token ? { conversation_id: m.conversation_id, token: m.resume_token } : null;
        if (m.resumed) {
          voice.resumes++;
          system('conversation resumed');
        }
        setStatus('running');
        $('stop').disabled = false;
        break;
      case 'audio': currentItem = m.item_id; break;
      case 'audio_done': player.port.postMessage({ type: 'done', item: m.item_id }); break;
      case 'interrupted': {
        voice.interrupts++;
        player.port.postMessage({ type: 'flush' });
        const el = document.querySelector(`[data-key="${CSS.escape('assistant:' + (m.item_id || currentItem))}"]`);
        if (el) el.classList.add('cut');
        currentItem = null;
        break;
      }
      case 'transcript':
        if (m.role === 'assistant') assistantWords('transcript', m.item_id, m.text, m.final);
        else transcript(m.role, m.item_id, m.text, m.final);
        break;
      case 'text': assistantWords('text', m.item_id, m.text, false); break;
      case 'speech_started': $('speaking').classList.add('on'); live.latencyFrom = null; break;
      case 'speech_stopped': $('speaking').classList.remove('on'); live.latencyFrom = performance.now(); break;
      case 'tool_call': {
        voice.tools.push({ call_id: m.call_id, name: m.name, arguments: m.arguments });
        const d = document.createElement('div');
        d.id = 'call-' + m.call_id;
        d.textContent = `⚙ ${m.name}(${JSON.stringify(m.arguments)}) …`;
        $('tools').append(d);
        break;
      }
      case 'tool_result': {
        const d = document.getElementById('call-' + m.call_id);
        const t = voice.tools.find((x) => x.call_id === m.call_id);
        if (t) t.output = m.output;
        if (d) d.textContent = d.textContent.replace(/ …$/, '') + ` → ${m.ok ? '' : 'error: '}${JSON.stringify(m.output)}`;
        break;
      }
      case 'session': system(`session ${m.state}${m.detail ? ': ' + m.detail : ''}`); break;
      case 'error':
        voice.errors.push(m);
        system(`error (${m.code}): ${m.message}`);
        if (m.code === 'resume_failed') voice.resumeFailed = m.message;
        if (m.fatal && FINAL_ERRORS.has(m.code)) finished = true;
        break;
      default: break;
    }
  };
  ws.onclose = (e) => {
    if (ws !== live.ws) return;
    live.ready = false;
    // What was queued from the lost connection will not be answered for: drop it.
    player.port.postMessage({ type: 'flush' });
    if (!finished && resumeInfo && RESUMABLE_CLOSES.has(e.code)) {
      reconnectLater(e);
      return;
    }
    setStatus(`closed${e.reason ? ': ' + e.reason : ''}`);
    stopAudio();
  };
  ws.onerror = () => { if (!live.ready && !resumeInfo) setStatus('error: connection failed'); };
}

// Reconnects with exponential backoff (0.25 s doubling to 5 s, with jitter), for at most
// 40 attempts (about three minutes).
function reconnectLater(e) {
  attempt++;
  if (attempt > 40) {
    setStatus('closed: could not reconnect');
    stopAudio();
    return;
  }
  voice.reconnecting = true;
  const delay = Math.min(5000, 250 * 2 ** (attempt - 1)) * (0.8 + 0.4 * Math.random());
  setStatus(`reconnecting (attempt ${attempt})`);
  if (attempt === 1) system(`connection lost (${e.code}); reconnecting…`);
  retryTimer = setTimeout(() => { retryTimer = null; if (!finished) connect(); }, delay);
}

function stopAudio() {
  if (live.mic) live.mic.getTracks().forEach((t) => t.stop());
  if (live.ctx && live.ctx.state !== 'closed') live.ctx.close();
  $('stop').disabled = true;
  $('start').disabled = false;
}

function end() {
  finished = true;
  if (retryTimer) { clearTimeout(retryTimer); retryTimer = null; }
  send({ type: 'end' });
  if (live.ws) live.ws.close(1000, 'ended by the user');
  stopAudio();
}

$('start').onclick = start;
$('stop').onclick = end;
$('say').onsubmit = (e) => {
  e.preventDefault();
  const text = $('text').value.trim();
  if (!text) return;
  send({ type: 'text', text });
  transcript('user', null, text, true);
  $('text').value = '';
};
if (new URLSearchParams(location.search).get('autostart') === '1') start();
