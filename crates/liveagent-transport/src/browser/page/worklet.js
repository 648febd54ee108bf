// liveagent page audio: a capture processor (mic -> 20 ms PCM16 frames) and a player
// processor (PCM16 items -> speaker) that counts the samples it really played per item.

class Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.frame = new Int16Array(options.processorOptions.frameSamples);
    this.n = 0;
  }
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (ch) {
      for (let i = 0; i < ch.length; i++) {
        const s = Math.max(-1, Math.min(1, ch[i]));
        this.frame[this.n++] = s < 0 ? s * 0x8000 : s * 0x7fff;
        if (this.n === this.frame.length) {
          const out = this.frame.slice(0);
          this.port.postMessage(out.buffer, [out.buffer]);
          this.n = 0;
        }
      }
    }
    return true;
  }
}

class Player extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];          // {item, pcm: Float32Array, off}
    this.played = new Map();  // item -> samples played
    this.done = new Set();    // items whose audio is complete
    this.current = null;      // item being played
    this.playing = false;     // prebuffer satisfied
    this.prebuffer = Math.round(sampleRate * 0.04);
    this.sinceReport = 0;
    this.port.onmessage = (e) => this.onMessage(e.data);
  }
  queued() { let n = 0; for (const c of this.queue) n += c.pcm.length - c.off; return n; }
  report(item, state) {
    this.port.postMessage({ type: 'played', item_id: item, samples: item ? (this.played.get(item) || 0) : 0, state });
  }
  onMessage(m) {
    if (m.type === 'audio') {
      const pcm = new Float32Array(m.pcm.length);
      for (let i = 0; i < pcm.length; i++) pcm[i] = m.pcm[i] / 32768;
      this.queue.push({ item: m.item, pcm, off: 0 });
      if (!this.played.has(m.item)) this.played.set(m.item, 0);
    } else if (m.type === 'done') {
      this.done.add(m.item);
      if (!this.queue.some((c) => c.item === m.item) && this.played.has(m.item)) this.report(m.item, 'drained');
    } else if (m.type === 'flush') {
      // Barge-in: drop everything queued now and say how far the listener got.
      const item = this.current || (this.queue[0] && this.queue[0].item) || null;
      let flushed = 0;
      for (const c of this.queue) flushed += c.pcm.length - c.off;
      this.queue = [];
      this.playing = false;
      this.port.postMessage({ type: 'flushed', samples: flushed });
      this.report(item, 'flushed');
      this.current = null;
    }
  }
  process(_inputs, outputs) {
    const out = outputs[0][0];
    out.fill(0);
    if (!this.playing) {
      const head = this.queue[0];
      if (head && (this.queued() >= this.prebuffer || this.done.has(head.item))) this.playing = true;
    }
    let i = 0;
    while (this.playing && i < out.length && this.queue.length) {
      const c = this.queue[0];
      if (this.current !== c.item) {
        if (this.current) this.report(this.current, 'drained');
        this.current = c.item;
        this.port.postMessage({ type: 'started', item_id: c.item });
      }
      const n = Math.min(out.length - i, c.pcm.length - c.off);
      out.set(c.pcm.subarray(c.off, c.off + n), i);
      c.off += n; i += n;
      this.played.set(c.item, this.played.get(c.item) + n);
      this.sinceReport += n;
      if (c.off >= c.pcm.length) this.queue.shift();
    }
    if (this.playing && !this.queue.length) {
      this.playing = false;
      if (this.current) { this.report(this.current, 'drained'); this.sinceReport = 0; }
    } else if (this.current && this.sinceReport >= sampleRate / 10) {
      this.report(this.current, 'playing');
      this.sinceReport = 0;
    }
    return true;
  }
}

registerProcessor('capture', Capture);
registerProcessor('player', Player);
