// The call page: a WHIP client (RFC 9725) in plain browser JavaScript, and the call's live
// transcript and per-turn latency from the gateway's server-sent events.
"use strict";
const $ = (id) => document.getElementById(id);
let pc = null, session = null, events = null, partial = null;

function status(text) { $("status").textContent = text; }

function line(who, text, cls) {
  const li = document.createElement("li");
  li.className = who + (cls ? " " + cls : "");
  const label = document.createElement("span");
  label.className = "who";
  label.textContent = who === "agent" ? "agent" : "you";
  li.append(label, document.createTextNode(text));
  $("transcript").append(li);
  li.scrollIntoView({block: "end"});
  return li;
}

async function numbers() {
  const list = await (await fetch("/numbers")).json();
  for (const n of list) {
    const option = document.createElement("option");
    option.value = n.number;
    option.textContent = `${n.number}: ${n.name} (${n.kind})`;
    $("number").append(option);
  }
  if (!list.length) { status("no numbers to call"); $("call").disabled = true; }
}

function gathered(pc) {  // the offer with every candidate in it: WHIP sends it whole
  return new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 2000);
  });
}

async function call() {
  $("call").disabled = true;
  $("transcript").textContent = "";
  status("getting the microphone");
  let mic;
  try {
    mic = await navigator.mediaDevices.getUserMedia({audio: true});
  } catch (err) {
    status("no microphone: " + err.message); $("call").disabled = false; return;
  }
  pc = new RTCPeerConnection();
  mic.getTracks().forEach((t) => pc.addTrack(t, mic));
  pc.ontrack = (e) => { $("remote").srcObject = e.streams[0] || new MediaStream([e.track]); };
  pc.onconnectionstatechange = () => {
    if (pc && ["failed", "closed"].includes(pc.connectionState)) ended("media " + pc.connectionState);
  };
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  status("calling " + $("number").value);
  const reply = await fetch("/whip/" + encodeURIComponent($("number").value), {
    method: "POST", headers: {"Content-Type": "application/sdp"}, body: pc.localDescription.sdp});
  if (reply.status !== 201) {
    status(`refused: ${reply.status} ${(await reply.text()).trim()}`);
    hangupLocal(); return;
  }
  session = reply.headers.get("Location");
  await pc.setRemoteDescription({type: "answer", sdp: await reply.text()});
  $("hangup").disabled = false;
  status("connecting");
  follow(session + "/events");
}

function follow(url) {
  events = new EventSource(url);
  events.addEventListener("connected", (e) => status("in call (" + JSON.parse(e.data).codec + ")"));
  events.addEventListener("partial", (e) => {
    const data = JSON.parse(e.data);
    if (!partial) partial = line("caller", data.text, "partial");
    else partial.lastChild.textContent = data.text;
  });
  events.addEventListener("transcript", (e) => {
    const data = JSON.parse(e.data);
    if (data.who === "caller" && partial) { partial.remove(); partial = null; }
    line(data.who, data.text);
  });
  events.addEventListener("latency", (e) => {
    const data = JSON.parse(e.data);
    const items = $("transcript").querySelectorAll("li.agent");
    const last = items[items.length - 1];
    if (!last) return;
    const note = document.createElement("span");
    note.className = "latency";
    note.textContent = `replied ${Math.round(data.ms)} ms after you stopped speaking`;
    last.append(note);
  });
  events.addEventListener("ended", (e) => ended("call ended by " + JSON.parse(e.data).by));
  events.onerror = () => { if (events && events.readyState === EventSource.CLOSED) events = null; };
}

function hangupLocal() {
  if (events) { events.close(); events = null; }
  if (pc) { pc.getSenders().forEach((s) => s.track && s.track.stop()); pc.close(); pc = null; }
  $("hangup").disabled = true;
  $("call").disabled = false;
}

function ended(why) { status(why); hangupLocal(); }

async function hangup() {
  const url = session;
  session = null;
  if (url) await fetch(url, {method: "DELETE"});
  ended("hung up");
}

$("call").addEventListener("click", call);
$("hangup").addEventListener("click", hangup);
numbers();
