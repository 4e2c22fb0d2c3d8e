package testhttp

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDoAndGetReturnTheWholeAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(b))
	}))
	defer srv.Close()

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/x", strings.NewReader("body"))
	if resp, b := Do(t, nil, req); resp.StatusCode != http.StatusTeapot || string(b) != "POST /x body" {
		t.Errorf("Do = %d %q", resp.StatusCode, b)
	}
	if resp, b := Get(t, srv.Client(), srv.URL+"/y"); resp.StatusCode != http.StatusTeapot || string(b) != "GET /y " {
		t.Errorf("Get = %d %q", resp.StatusCode, b)
	}
}

func TestThroughProxySendsEveryRequestToTheProxy(t *testing.T) {
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "proxied "+r.URL.String()) // an absolute URI: a proxy request
	}))
	defer proxy.Close()
	_, b := Get(t, ThroughProxy(t, proxy.URL), "http://app.internal.example/z")
	if string(b) != "proxied http://app.internal.example/z" {
		t.Errorf("through the proxy: %q", b)
	}
}
