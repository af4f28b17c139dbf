/*
 * The studio's in-page player: raw PCM from WS /api/v1/speak, played with Web Audio.
 *
 * Why not <audio> or gr.Audio(streaming=True): those re-encode and buffer a chunk or more
 * before anything is heard. Here every binary frame (float32 PCM) becomes an AudioBuffer
 * scheduled to start exactly where the previous one ends, counted in samples, so chunks
 * join without gaps or clicks and playback starts with the first chunk. A small jitter
 * lead (start a little in the future) absorbs network and generation jitter; if audio
 * still runs dry (generation slower than real time) the lead grows for the rest of the
 * utterance.
 *
 * One WebSocket per utterance (a warm one is opened ahead of time), so a Stop or a new
 * Speak never mixes the audio of two requests. Stop fades out in 15 ms (no click) and
 * sends `cancel`; the server stops within one frame.
 *
 * Test hook: window.QwenStudio.debug.utterances[] records, per utterance, every received
 * chunk and every scheduled buffer (start time in samples, length, underruns), and
 * window.QwenStudio.debugSamples(i) returns what was received and what was queued.
 */
(function () {
  "use strict";
  if (window.QwenStudio) return;

  var FIRST_LEAD_S = 0.12;   // jitter buffer before the first chunk plays
  var MAX_LEAD_S = 1.0;
  var FADE_S = 0.015;

  function wsUrl() {
    var url = new URL("api/v1/speak", window.location.href.split("?")[0].split("#")[0].replace(/[^/]*$/, ""));
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.toString();
  }

  function fmtMs(ms) { return ms == null ? "–" : (ms < 1000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(2) + " s"); }

  function wavBlob(chunks, rate) {
    var total = 0, i, j;
    for (i = 0; i < chunks.length; i++) total += chunks[i].length;
    var buf = new ArrayBuffer(44 + total * 2), v = new DataView(buf), o = 44;
    function str(p, s) { for (var k = 0; k < s.length; k++) v.setUint8(p + k, s.charCodeAt(k)); }
    str(0, "RIFF"); v.setUint32(4, 36 + total * 2, true); str(8, "WAVE"); str(12, "fmt ");
    v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
    v.setUint32(24, rate, true); v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true);
    v.setUint16(34, 16, true); str(36, "data"); v.setUint32(40, total * 2, true);
    for (i = 0; i < chunks.length; i++) {
      for (j = 0; j < chunks[i].length; j++, o += 2) {
        var s = Math.max(-1, Math.min(1, chunks[i][j]));
        v.setInt16(o, Math.round(s * 32767), true);
      }
    }
    return new Blob([buf], { type: "audio/wav" });
  }

  /* ---- gapless scheduling ---------------------------------------------------------- */
  // firstLead: the jitter lead in seconds (tests raise it to hear a slow model without gaps)
  function Player() { this.ctx = null; this.gain = null; this.sources = []; this.firstLead = FIRST_LEAD_S; this.reset(); }

  Player.prototype.context = function () {
    if (!this.ctx || this.ctx.state === "closed") {
      try { this.ctx = new AudioContext({ sampleRate: 24000, latencyHint: "interactive" }); }
      catch (e) { this.ctx = new AudioContext({ latencyHint: "interactive" }); }
    }
    if (this.ctx.state === "suspended") this.ctx.resume();
    return this.ctx;
  };

  Player.prototype.reset = function () {
    this.t0 = null;        // context time of sample 0 of the utterance
    this.queued = 0;       // samples scheduled so far
    this.lead = this.firstLead || FIRST_LEAD_S;
    this.underruns = 0;
  };

  Player.prototype.begin = function () {
    var ctx = this.context();
    this.gain = ctx.createGain();
    this.gain.connect(ctx.destination);
    this.reset();
  };

  // Schedule one chunk right after the previous one; returns its record for the debug log.
  Player.prototype.schedule = function (samples) {
    var ctx = this.ctx, rate = ctx.sampleRate, now = ctx.currentTime, underrun = false;
    if (this.t0 === null) {
      this.t0 = now + this.lead;
    } else if (this.t0 + this.queued / rate < now + 0.005) {
      // ran dry: restart the clock with a longer lead (a gap is unavoidable here)
      underrun = true;
      this.underruns += 1;
      this.lead = Math.min(MAX_LEAD_S, this.lead * 2);
      this.t0 = now + this.lead - this.queued / rate;
    }
    var buffer = ctx.createBuffer(1, samples.length, rate);
    buffer.copyToChannel(samples, 0);
    var src = ctx.createBufferSource();
    src.buffer = buffer;
    src.connect(this.gain);
    var startSample = this.queued, when = this.t0 + startSample / rate;
    src.start(when);
    this.queued += samples.length;
    var self = this;
    this.sources.push(src);
    src.onended = function () { var k = self.sources.indexOf(src); if (k >= 0) self.sources.splice(k, 1); };
    return { startSample: startSample, length: samples.length, when: when, underrun: underrun, buffer: buffer };
  };

  Player.prototype.endTime = function () {
    return this.t0 === null ? 0 : this.t0 + this.queued / this.ctx.sampleRate;
  };

  Player.prototype.stop = function () {
    if (!this.ctx || !this.gain) return;
    var now = this.ctx.currentTime, gain = this.gain, sources = this.sources.slice();
    gain.gain.setValueAtTime(gain.gain.value, now);
    gain.gain.linearRampToValueAtTime(0, now + FADE_S);
    sources.forEach(function (s) { try { s.stop(now + FADE_S + 0.005); } catch (e) { /* already stopped */ } });
    this.sources = [];
    this.reset();
  };

  /* ---- the studio client ------------------------------------------------------------- */
  function Studio() {
    this.player = new Player();
    this.root = null;
    this.warm = null;
    this.current = null;
    this.debug = { utterances: [] };
  }

  Studio.prototype.attach = function (root) {
    this.root = root;
    var self = this;
    document.addEventListener("keydown", function (e) {
      if (e.key !== "Enter" || !(e.ctrlKey || e.metaKey)) return;
      var box = document.getElementById("speak-text");
      if (box && box.contains(e.target)) {
        e.preventDefault();
        var btn = document.querySelector("#speak-btn");
        if (btn) btn.click();
      }
    });
    this.prepareSocket();
    this.show({ status: "Ready. Type some text and press Speak (Ctrl/Cmd+Enter)." });
    return self;
  };

  Studio.prototype.el = function (role) { return this.root ? this.root.querySelector('[data-role="' + role + '"]') : null; };

  Studio.prototype.show = function (fields) {
    var map = { status: "status", ttfa: "ttfa", rtf: "rtf", audio: "audio", queue: "queue" };
    for (var key in fields) {
      var node = this.el(map[key] || key);
      if (node) node.textContent = fields[key];
    }
    if (fields.level != null && this.root) {
      var box = this.root.querySelector(".studio-player") || this.root;
      box.setAttribute("data-state", fields.level);
    }
  };

  Studio.prototype.prepareSocket = function () {
    if (this.warm && this.warm.readyState <= 1) return this.warm;
    var ws = new WebSocket(wsUrl());
    ws.binaryType = "arraybuffer";
    ws._ready = null;
    ws._early = [];
    ws.onmessage = function (ev) { ws._early.push(ev); };
    this.warm = ws;
    return ws;
  };

  Studio.prototype.takeSocket = function () {
    var ws = this.prepareSocket();
    this.warm = null;
    return ws;
  };

  // opts: text, voice, mode, language, temperature, topK, topP, repetitionPenalty, seed, maxFrames, token
  Studio.prototype.speak = function (opts) {
    var text = (opts.text || "").trim();
    if (!text) { this.show({ status: "Type some text to speak first.", level: "error" }); return; }
    this.stop(true);
    var player = this.player;
    player.begin();
    var u = {
      index: this.debug.utterances.length, requestId: null, tClick: performance.now(), tFirst: null,
      received: [], scheduled: [], sampleRate: player.ctx.sampleRate, complete: null, error: null,
      errors: [], done: false, cancelled: false
    };
    this.debug.utterances.push(u);
    var ws = this.takeSocket(), self = this;
    u.ws = ws;
    this.current = u;
    this.show({ status: "Connecting…", ttfa: "–", rtf: "–", audio: "–", queue: "–", level: "busy" });
    this.hideDownload();
    var start = {
      type: "start", sampleRate: player.ctx.sampleRate, encoding: "pcm32f",
      voice: opts.voice || undefined, language: opts.language || "auto", mode: opts.mode || "auto",
      sampling: {
        temperature: opts.temperature, topK: opts.topK, topP: opts.topP,
        repetitionPenalty: opts.repetitionPenalty,
        seed: (opts.seed === "" || opts.seed == null || Number(opts.seed) < 0) ? null : Number(opts.seed),
        maxFrames: opts.maxFrames
      }
    };
    if (opts.token) start.authToken = opts.token;
    function send() {
      ws.send(JSON.stringify(start));
      ws.send(JSON.stringify({ type: "speak", text: text }));
      u.tSent = performance.now();
      self.show({ status: "Generating…" });
    }
    ws.onmessage = function (ev) { self.onMessage(u, ev); };
    ws.onclose = function () { if (!u.done && self.current === u) self.finish(u, "Connection closed by the server.", "error"); };
    ws.onerror = function () { if (!u.done && self.current === u) self.finish(u, "Cannot reach the server (WebSocket error).", "error"); };
    var early = ws._early || [];
    ws._early = [];
    early.forEach(function (ev) { self.onMessage(u, ev); });
    if (ws.readyState === 1) send(); else ws.addEventListener("open", send, { once: true });
    this.prepareSocket();  // the next utterance's socket
  };

  Studio.prototype.onMessage = function (u, ev) {
    if (u.cancelled && typeof ev.data !== "string") return;
    if (typeof ev.data !== "string") return this.onAudio(u, new Float32Array(ev.data));
    var msg;
    try { msg = JSON.parse(ev.data); } catch (e) { return; }
    if (msg.type === "started") u.started = msg;
    else if (msg.type === "queued") this.show({ queue: "#" + msg.position, status: "Waiting in the queue (position " + msg.position + ")…" });
    else if (msg.type === "audioStart") { u.requestId = msg.requestId; this.show({ queue: "playing" }); }
    else if (msg.type === "complete") {
      u.complete = msg;
      this.show({ rtf: msg.rtf == null ? "–" : msg.rtf.toFixed(2), audio: (msg.audioLengthMs / 1000).toFixed(2) + " s" });
      this.finish(u, "Done: " + (msg.audioLengthMs / 1000).toFixed(2) + " s of audio in " + fmtMs(msg.durationMs) + ".", "done");
    } else if (msg.type === "error") {
      u.errors.push(msg);
      if (msg.code === "VOICE_NOT_FOUND") { this.show({ status: msg.message }); return; }
      u.error = msg;
      if (msg.code === "CANCELLED") return this.finish(u, "Stopped.", "done");
      // MODEL_LOADING messages already say why synthesis is unavailable and what to do
      var prefix = msg.code === "MODEL_LOADING" ? "" : "Error (" + msg.code + "): ";
      this.finish(u, prefix + msg.message, "error");
    }
  };

  Studio.prototype.onAudio = function (u, samples) {
    if (u.done || this.current !== u) return;
    if (u.tFirst === null) {
      u.tFirst = performance.now();
      this.show({ ttfa: fmtMs(u.tFirst - u.tClick), status: "Playing…" });
    }
    u.received.push(samples);
    var rec = this.player.schedule(samples);
    u.scheduled.push(rec);
    this.show({ audio: (this.player.queued / this.player.ctx.sampleRate).toFixed(2) + " s" });
  };

  Studio.prototype.finish = function (u, status, level) {
    if (u.done) return;
    u.done = true;
    u.tDone = performance.now();
    this.show({ status: status, level: level, queue: "–" });
    if (u.received.length) this.offerDownload(u);
    try { u.ws.close(); } catch (e) { /* closing anyway */ }
  };

  Studio.prototype.stop = function (quiet) {
    var u = this.current;
    this.player.stop();
    if (!u || u.done) return;
    u.cancelled = true;
    u.tCancel = performance.now();
    try { u.ws.send(JSON.stringify({ type: "cancel" })); } catch (e) { /* socket gone */ }
    if (!quiet) this.show({ status: "Stopping…" });
    var self = this;
    // the server answers with error CANCELLED (or complete if it had just finished)
    setTimeout(function () { if (!u.done) self.finish(u, "Stopped.", "done"); }, 3000);
  };

  Studio.prototype.offerDownload = function (u) {
    var link = this.el("download");
    if (!link) return;
    if (link.href && link.href.indexOf("blob:") === 0) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(wavBlob(u.received, u.sampleRate));
    link.hidden = false;
  };

  Studio.prototype.hideDownload = function () { var link = this.el("download"); if (link) link.hidden = true; };

  // what the page received and what it queued, for the tests
  Studio.prototype.debugSamples = function (i) {
    var u = this.debug.utterances[i == null ? this.debug.utterances.length - 1 : i];
    function flat(arrays) { var out = []; arrays.forEach(function (a) { for (var k = 0; k < a.length; k++) out.push(a[k]); }); return out; }
    return {
      sampleRate: u.sampleRate, requestId: u.requestId, started: u.started || null, complete: u.complete,
      error: u.error, errors: u.errors,
      cancelled: u.cancelled, underruns: u.scheduled.filter(function (r) { return r.underrun; }).length,
      chunks: u.received.map(function (a) { return a.length; }),
      schedule: u.scheduled.map(function (r) { return { startSample: r.startSample, length: r.length, when: r.when }; }),
      received: flat(u.received),
      queued: flat(u.scheduled.map(function (r) { return r.buffer.getChannelData(0); })),
      firstAudioMs: u.tFirst === null ? null : u.tFirst - u.tClick,
      cancelToDoneMs: u.tCancel && u.tDone ? u.tDone - u.tCancel : null
    };
  };

  window.QwenStudio = new Studio();
})();
