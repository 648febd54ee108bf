// liveagent browser client: mic -> WebSocket (PCM16), WebSocket -> speaker, transcripts,
// tool calls and per-turn latency. Protocol: docs/transports.md (version 1).
'use strict';

const $ = (id) => document.getElementById(id);
// Test-visible state: plain values only (no live objects).
const voice = (window.voice = {
  status: 'idle', contextState: null, contextRate: 0, conversationId: null,
  framesSent: 0, framesReceived: 0, interrupts: 0, playedSamples: 0, playedMs: 0,
  flushedSamples: 0, lastFlush: null, latencies: [], transcript: [], tools: [], errors: [],
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

async function start() {
  $('start').disabled = true;
  setStatus('starting');
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

    // Every handler is attached before the socket can open.
    const url = new URL('ws', location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.search = location.search;
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    live.ws = ws;
    let ready = false;
    let currentItem = null;
    let latencyFrom = null;

    capture.port.onmessage = (e) => {
      if (ready && ws.readyState === WebSocket.OPEN && ws.bufferedAmount < 1 << 20) {
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
      } else if (m.type === 'started' && latencyFrom !== null) {
        const ms = Math.round(performance.now() - latencyFrom);
        latencyFrom = null;
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

    ws.onopen = () => send({ type: 'hello', protocol: 1, input_rate: ctx.sampleRate, output_rate: ctx.sampleRate });
    ws.onmessage = (e) => {
      if (typeof e.data !== 'string') {
        voice.framesReceived++;
        const pcm = new Int16Array(e.data);
        player.port.postMessage({ type: 'audio', item: currentItem, pcm }, [pcm.buffer]);
        return;
      }
      const m = JSON.parse(e.data);
      switch (m.type) {
        case 'ready':
          ready = true;
          voice.conversationId = m.conversation_id;
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
        case 'speech_started': $('speaking').classList.add('on'); latencyFrom = null; break;
        case 'speech_stopped': $('speaking').classList.remove('on'); latencyFrom = performance.now(); break;
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
          break;
        default: break;
      }
    };
    ws.onclose = (e) => {
      setStatus(`closed${e.reason ? ': ' + e.reason : ''}`);
      stopAudio();
    };
    ws.onerror = () => setStatus('error: connection failed');
  } catch (err) {
    setStatus(`error: ${err && err.message ? err.message : err}`);
    $('start').disabled = false;
  }
}

function stopAudio() {
  if (live.mic) live.mic.getTracks().forEach((t) => t.stop());
  if (live.ctx && live.ctx.state !== 'closed') live.ctx.close();
  $('stop').disabled = true;
  $('start').disabled = false;
}

function end() {
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
