// Package testhttp sends a test's HTTP request and hands back the whole
// answer — the response and its body, already read and closed — so that a
// test states what it sends and what it expects, not the plumbing between.
// A request that gets no answer at all (refused, reset, timed out) fails
// the test at once: every caller needs an answer to check. It imports
// nothing of tailgate, so any test package can use it.
package testhttp

import (
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// Do sends req with c (http.DefaultClient when c is nil) and returns the
// response with its body read and closed. A body cut short is returned as
// far as it came; the test's own checks on it say what was missing.
func Do(t testing.TB, c *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		// err names the method and URL (a *url.Error).
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// Get is Do for a GET of url: through a proxy or a tailnet when c is
// set up so, directly when c is nil.
func Get(t testing.TB, c *http.Client, url string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return Do(t, c, req)
}

// ThroughProxy is a client that sends every request through the HTTP proxy
// at proxyURL (a run's proxy, say) and gives up on an answer after 30
// seconds. Its idle connections are closed when the test ends.
func ThroughProxy(t testing.TB, proxyURL string) *http.Client {
	t.Helper()
	pu, err := url.Parse(proxyURL)
	if err != nil {
		t.Fatalf("proxy URL %q: %v", proxyURL, err)
	}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}
