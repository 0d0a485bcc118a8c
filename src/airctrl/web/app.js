// AIRCTRL live page: consent first, then camera -> WebSocket -> boxes, labels, timeline.
// Plain browser JavaScript, no dependencies (the page must work offline).
"use strict";

(function () {
  const EMOTIONS = ["neutral", "happy", "sad", "angry", "surprised", "fear", "disgust"];
  const COLOURS = {
    neutral: "#9aa7b4", happy: "#3fb68b", sad: "#4a90d9", angry: "#d9534f",
    surprised: "#f0ad4e", fear: "#9b59b6", disgust: "#8d6e63",
  };
  // Frames sent but not yet answered; more would only queue at the server.
  const MAX_IN_FLIGHT = 2;
  // Seconds of history the timeline shows.
  const TIMELINE_SECONDS = 60;
  const JPEG_QUALITY = 0.7;

  const $ = (id) => document.getElementById(id);
  const video = $("video");
  const overlay = $("overlay");
  const timeline = $("timeline");
  const state = {
    config: { auth_required: true, kiosk_key: null },
    stream: null, socket: null, running: false, inFlight: 0,
    sent: 0, results: 0, history: [], startedAt: 0, grab: document.createElement("canvas"),
  };

  function setStatus(text) { $("status").textContent = text; }

  function apiKey() { return state.config.kiosk_key || $("api-key").value.trim(); }

  function authHeaders() {
    const key = apiKey();
    return key ? { "X-API-Key": key } : {};
  }

  function subjectId() {
    let id = $("subject-id").value.trim();
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(id)) {
      id = "s-" + Math.random().toString(36).slice(2, 12);
      $("subject-id").value = id;
    }
    return id;
  }

  async function loadConfig() {
    try {
      const response = await fetch("/web-config.json");
      if (response.ok) state.config = await response.json();
    } catch (err) {
      setStatus("Server config unavailable: " + err);
    }
    if (state.config.kiosk_key || !state.config.auth_required) $("key-box").hidden = true;
    const saved = sessionStorage.getItem("airctrl-subject");
    $("subject-id").value = saved || "";
    subjectId();
  }

  function buildLegend() {
    $("legend").innerHTML = "";
    for (const name of EMOTIONS) {
      const item = document.createElement("span");
      item.style.setProperty("--c", COLOURS[name]);
      item.textContent = name;
      $("legend").appendChild(item);
    }
  }

  // ---- consent -------------------------------------------------------------

  function accept() {
    $("consent").hidden = true;
    $("declined").hidden = true;
    sessionStorage.setItem("airctrl-subject", subjectId());
    start().catch((err) => setStatus("Could not start: " + err.message));
  }

  function decline() {
    $("consent").hidden = true;
    $("declined").hidden = false;
    setStatus("Camera off: consent declined");
  }

  // ---- camera and socket ---------------------------------------------------

  async function start() {
    if (state.running) return;
    if (state.config.auth_required && !apiKey()) {
      setStatus("Enter an API key first");
      $("consent").hidden = false;
      return;
    }
    setStatus("Starting camera...");
    state.stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false,
    });
    video.srcObject = state.stream;
    await video.play();
    state.running = true;
    state.startedAt = performance.now();
    state.history = [];
    openSocket();
  }

  function openSocket() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/v1/stream");
    socket.binaryType = "arraybuffer";
    state.socket = socket;
    socket.onopen = () => {
      socket.send(JSON.stringify({
        api_key: apiKey() || null,
        subject_id: subjectId(),
        consent: $("keep-history").checked,
      }));
      setStatus("Connecting...");
    };
    socket.onmessage = (event) => handleMessage(JSON.parse(event.data));
    socket.onclose = (event) => {
      state.inFlight = 0;
      if (state.running) {
        setStatus("Disconnected" + (event.reason ? ": " + event.reason : ""));
        stop(false);
      }
    };
    socket.onerror = () => setStatus("Connection error");
  }

  function handleMessage(message) {
    if (message.type === "ready") {
      setStatus("Live" + (message.storing ? " (keeping history)" : " (nothing stored)"));
      pump();
    } else if (message.type === "result") {
      state.inFlight = Math.max(0, state.inFlight - 1);
      state.results += 1;
      drawFaces(message);
      listFaces(message);
      addToTimeline(message);
      $("counters").textContent =
        `frames sent ${message.received}, answered ${message.processed}, dropped ${message.dropped}`;
      pump();
    } else if (message.type === "error") {
      state.inFlight = Math.max(0, state.inFlight - 1);
      pump();
    } else if (message.type === "notice") {
      setStatus(message.detail);
    }
  }

  function pump() {
    if (!state.running || !state.socket || state.socket.readyState !== WebSocket.OPEN) return;
    while (state.inFlight < MAX_IN_FLIGHT) {
      state.inFlight += 1;
      sendFrame();
    }
  }

  function sendFrame() {
    const width = video.videoWidth, height = video.videoHeight;
    if (!width || !height) {
      state.inFlight -= 1;
      setTimeout(pump, 100);
      return;
    }
    const grab = state.grab;
    grab.width = width;
    grab.height = height;
    grab.getContext("2d").drawImage(video, 0, 0, width, height);
    const stamp = Math.round(performance.now() - state.startedAt);
    grab.toBlob((blob) => {
      if (!blob || !state.socket || state.socket.readyState !== WebSocket.OPEN) {
        state.inFlight = Math.max(0, state.inFlight - 1);
        return;
      }
      blob.arrayBuffer().then((buffer) => {
        state.socket.send(JSON.stringify({ timestamp_ms: stamp }));
        state.socket.send(buffer);
        state.sent += 1;
      });
    }, "image/jpeg", JPEG_QUALITY);
  }

  function stop(closeSocket = true) {
    state.running = false;
    if (closeSocket && state.socket) {
      try { state.socket.send(JSON.stringify({ type: "end" })); } catch (err) { /* closed */ }
      state.socket.close();
    }
    state.socket = null;
    if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
    state.stream = null;
    video.srcObject = null;
    overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
    if (!closeSocket) return;
    setStatus("Camera off");
  }

  // ---- drawing ---------------------------------------------------------------

  function drawFaces(message) {
    const rect = overlay.getBoundingClientRect();
    overlay.width = rect.width;
    overlay.height = rect.height;
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    // The video is letterboxed (object-fit: contain): same scale on both axes.
    const scale = Math.min(rect.width / message.width, rect.height / message.height);
    const offX = (rect.width - message.width * scale) / 2;
    const offY = (rect.height - message.height * scale) / 2;
    ctx.lineWidth = 3;
    ctx.font = "16px system-ui, sans-serif";
    for (const face of message.faces) {
      const [x, y, w, h] = face.box;
      const colour = COLOURS[face.emotion] || "#ffffff";
      ctx.strokeStyle = colour;
      ctx.strokeRect(offX + x * scale, offY + y * scale, w * scale, h * scale);
      const text = `#${face.id} ${face.emotion} ${Math.round(face.confidence * 100)}%`;
      const tx = offX + x * scale, ty = Math.max(18, offY + y * scale - 6);
      ctx.fillStyle = "rgba(0,0,0,0.6)";
      ctx.fillRect(tx - 2, ty - 16, ctx.measureText(text).width + 4, 20);
      ctx.fillStyle = colour;
      ctx.fillText(text, tx, ty);
    }
  }

  function listFaces(message) {
    const list = $("faces");
    list.innerHTML = "";
    if (!message.faces.length) {
      const item = document.createElement("li");
      item.className = "no-face";
      item.textContent = "no face";
      list.appendChild(item);
    }
    for (const face of message.faces) {
      const item = document.createElement("li");
      item.className = "face";
      item.dataset.emotion = face.emotion;
      const label = document.createElement("span");
      label.className = "label";
      label.style.color = COLOURS[face.emotion] || "inherit";
      label.textContent = face.emotion;
      const evidence = face.evidence.slice(0, 2)
        .map((e) => `${e.feature} ${e.value.toFixed(2)}`).join(", ");
      item.append(`Face ${face.id}: `, label,
        ` ${Math.round(face.confidence * 100)}%` + (evidence ? ` (${evidence})` : ""));
      list.appendChild(item);
    }
  }

  function addToTimeline(message) {
    const seconds = message.timestamp_ms / 1000;
    let face = null;
    for (const f of message.faces) {
      if (!face || f.box[2] * f.box[3] > face.box[2] * face.box[3]) face = f;
    }
    state.history.push({ t: seconds, p: face ? face.probabilities : null });
    while (state.history.length && seconds - state.history[0].t > TIMELINE_SECONDS) {
      state.history.shift();
    }
    drawTimeline(seconds);
  }

  function drawTimeline(now) {
    const ctx = timeline.getContext("2d");
    const w = timeline.width, h = timeline.height;
    ctx.clearRect(0, 0, w, h);
    ctx.strokeStyle = "#2a323b";
    ctx.lineWidth = 1;
    for (let i = 1; i < 4; i++) {
      ctx.beginPath();
      ctx.moveTo(0, (h * i) / 4);
      ctx.lineTo(w, (h * i) / 4);
      ctx.stroke();
    }
    // Drawn from the left edge; the window grows from 10 s up to
    // TIMELINE_SECONDS, then scrolls.
    const first = state.history.length ? state.history[0].t : now;
    const start = Math.max(first, now - TIMELINE_SECONDS);
    const span = Math.max(10, now - start);
    const xOf = (t) => ((t - start) / span) * w;
    ctx.lineWidth = 2;
    for (const name of EMOTIONS) {
      ctx.strokeStyle = COLOURS[name];
      ctx.beginPath();
      let drawing = false;
      for (const point of state.history) {
        if (!point.p) { drawing = false; continue; }
        const x = xOf(point.t), y = h - (point.p[name] || 0) * (h - 4) - 2;
        if (drawing) ctx.lineTo(x, y); else ctx.moveTo(x, y);
        drawing = true;
      }
      ctx.stroke();
    }
  }

  // ---- erasure ---------------------------------------------------------------

  async function deleteMyData() {
    const id = subjectId();
    stop();
    try {
      const response = await fetch("/v1/subjects/" + encodeURIComponent(id), {
        method: "DELETE", headers: authHeaders(),
      });
      const body = await response.json();
      $("delete-result").textContent = response.ok
        ? (body.deleted ? "All stored data for " + id + " was deleted."
                        : "Nothing was stored for " + id + ".")
        : "Delete failed: " + body.detail;
    } catch (err) {
      $("delete-result").textContent = "Delete failed: " + err;
    }
  }

  $("consent-accept").addEventListener("click", accept);
  $("consent-decline").addEventListener("click", decline);
  $("consent-reopen").addEventListener("click", () => { $("consent").hidden = false; });
  $("stop").addEventListener("click", () => stop());
  $("delete-data").addEventListener("click", deleteMyData);
  buildLegend();
  loadConfig();
})();
