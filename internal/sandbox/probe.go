package sandbox

import (
	"net/http"
)

// ProbePath is the demo app's leak probe: a page whose script tries every
// way a page has to reach off the run's targets: fetch to a public name,
// to cloud metadata, to an IPv6 literal and to a loopback port; an image
// from an off-target address; a WebRTC peer connection with an off-target
// STUN server (UDP); and an HTTPS fetch to an origin that advertises
// HTTP/3 with Alt-Svc (QUIC is UDP). It writes what happened into the
// page and ends with ProbeDone, so a browser flow can wait for it. The
// page's query may name a loopback port to try on 127.0.0.1 and [::1]
// (?loopback_port=PORT: tailgate's own API, say).
const ProbePath = "/probe"

// ProbeDone is the text the probe page shows when every attempt has
// finished.
const ProbeDone = "probe done"

// ProbeSTUN is the off-target STUN server the probe's WebRTC attempt
// names (TEST-NET-3: routed nowhere).
const ProbeSTUN = "203.0.113.7:3478"

var probePage = []byte(`<!doctype html>
<html><head><title>leak probe</title></head>
<body>
<h1>` + DemoAppText + `: leak probe</h1>
<ul id="results"></ul>
<p id="status">probe running</p>
<script>
(async () => {
  const results = document.getElementById('results');
  const note = (what, outcome) => {
    const li = document.createElement('li');
    li.textContent = what + ': ' + outcome;
    results.appendChild(li);
  };
  const tryFetch = async (url) => {
    try {
      const r = await fetch(url, {mode: 'no-cors', cache: 'no-store'});
      // no-cors hides the status: the answer is the run proxy's refusal
      // unless the report shows the destination reached.
      return 'got an answer (status hidden; see the run report)';
    } catch (e) { return 'failed'; }
  };
  const tryImage = (url) => new Promise((done) => {
    const img = new Image();
    img.onload = () => done('loaded');
    img.onerror = () => done('failed');
    img.src = url;
    setTimeout(() => done('timed out'), 5000);
  });
  note('fetch http://example.com/', await tryFetch('http://example.com/'));
  note('fetch https://example.com/', await tryFetch('https://example.com/'));
  note('fetch metadata', await tryFetch('http://169.254.169.254/latest/meta-data/'));
  note('fetch IPv6 literal', await tryFetch('http://[2001:db8::7]/'));
  const port = new URLSearchParams(location.search).get('loopback_port');
  if (port) {
    note('fetch loopback 127.0.0.1:' + port, await tryFetch('http://127.0.0.1:' + port + '/v1/environments'));
    note('fetch loopback [::1]:' + port, await tryFetch('http://[::1]:' + port + '/v1/environments'));
  }
  note('image', await tryImage('http://203.0.113.7/pixel.png'));
  // HTTP/3: this origin advertises h3 with Alt-Svc; fetch it twice so a
  // browser that honoured Alt-Svc would try QUIC the second time.
  const h3 = 'https://' + location.hostname + '` + ProbePath + `?h3';
  note('https with Alt-Svc h3 (1)', await tryFetch(h3));
  note('https with Alt-Svc h3 (2)', await tryFetch(h3));
  // WebRTC: gathering candidates against an off-target STUN server sends
  // UDP unless the browser keeps it to the proxy.
  let candidates = 0, udp = 0;
  try {
    const pc = new RTCPeerConnection({iceServers: [{urls: 'stun:` + ProbeSTUN + `'}]});
    pc.createDataChannel('probe');
    pc.onicecandidate = (e) => {
      if (!e.candidate || !e.candidate.candidate) return;
      candidates++;
      if (/ udp /i.test(e.candidate.candidate)) udp++;
    };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((done) => {
      pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') done(); };
      setTimeout(done, 4000);
    });
    pc.close();
    note('webrtc', 'candidates=' + candidates + ' udp=' + udp);
  } catch (e) {
    note('webrtc', 'error ' + e.name);
  }
  document.getElementById('status').textContent = '` + ProbeDone + `';
})();
</script>
</body></html>
`)

// serveProbe serves the probe page, advertising HTTP/3 on this origin.
func serveProbe(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Alt-Svc", `h3=":443"; ma=86400, h3-29=":443"; ma=86400`)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(probePage)
}
