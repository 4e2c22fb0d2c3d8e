package browser

import (
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
)

// netLog collects Chromium's network events into Requests. handle runs on
// chromedp's event goroutine, so it only records under a lock.
type netLog struct {
	mu      sync.Mutex
	entries []*netEntry
	byID    map[network.RequestID]*netEntry
}

type netEntry struct {
	Request
	start cdp.MonotonicTime
}

func newNetLog() *netLog { return &netLog{byID: map[network.RequestID]*netEntry{}} }

func since(start, end cdp.MonotonicTime) time.Duration {
	if end < start {
		return 0
	}
	return time.Duration(float64(end-start) * float64(time.Second))
}

func (l *netLog) handle(ev any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		if prev := l.byID[ev.RequestID]; prev != nil && ev.RedirectResponse != nil {
			prev.Status = int(ev.RedirectResponse.Status)
			prev.Refusal = header(ev.RedirectResponse.Headers, "X-Tailgate-Refusal")
			prev.Duration = since(prev.start, ev.Timestamp)
		}
		if ev.Request == nil {
			return
		}
		u, err := url.Parse(ev.Request.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "ws" && u.Scheme != "wss") {
			delete(l.byID, ev.RequestID) // data:, blob:, about: never reach the network
			return
		}
		e := &netEntry{start: ev.Timestamp, Request: Request{
			URL:    safeURL(ev.Request.URL),
			Host:   u.Hostname(),
			Port:   port(u),
			Method: ev.Request.Method,
			Type:   string(ev.Type),
		}}
		l.entries = append(l.entries, e)
		l.byID[ev.RequestID] = e
	case *network.EventResponseReceived:
		if e := l.byID[ev.RequestID]; e != nil && ev.Response != nil {
			e.Status = int(ev.Response.Status)
			e.Refusal = header(ev.Response.Headers, "X-Tailgate-Refusal")
		}
	case *network.EventLoadingFinished:
		if e := l.byID[ev.RequestID]; e != nil {
			e.Bytes = int64(ev.EncodedDataLength)
			e.Duration = since(e.start, ev.Timestamp)
		}
	case *network.EventLoadingFailed:
		if e := l.byID[ev.RequestID]; e != nil {
			e.Failure = ev.ErrorText
			if ev.BlockedReason != "" {
				e.Failure += " (blocked: " + string(ev.BlockedReason) + ")"
			}
			e.Duration = since(e.start, ev.Timestamp)
		}
	}
}

func port(u *url.URL) int {
	if p, err := strconv.Atoi(u.Port()); err == nil {
		return p
	}
	switch u.Scheme {
	case "https", "wss":
		return 443
	}
	return 80
}

func (l *netLog) requests() []Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Request, len(l.entries))
	for i, e := range l.entries {
		out[i] = e.Request
	}
	return out
}
