package tailnet

import (
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"tailscale.com/logtail"
	"tailscale.com/types/logger"
)

// lineBuffer is a logtail buffer that keeps what is written to it and
// gives nothing to upload.
type lineBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *lineBuffer) TryReadLine() ([]byte, error) { return nil, nil }

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, string(p))
	return len(p), nil
}

func (b *lineBuffer) has(s string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// noNetwork fails every request: the logger under test must not reach
// Tailscale's log service.
type noNetwork struct{}

func (noNetwork) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("no network in this test")
}

func newTestLogtail(t *testing.T, buf logtail.Buffer) *logtail.Logger {
	lg := logtail.NewLogger(logtail.Config{
		Collection: "tailgate-test",
		Buffer:     buf,
		Stderr:     io.Discard,
		HTTPC:      &http.Client{Transport: noNetwork{}},
	}, logger.Discard)
	t.Cleanup(func() { lg.Shutdown(t.Context()) })
	return lg
}

// A node's log lines are no longer written to logtail's buffer (files in
// the node's directory, in tsnet) once uploads are off; a user who opted
// in to uploads keeps them. Both halves are in one test because logtail's
// switch is process-wide and one-way.
func TestKeepTailscaleLogsLocal(t *testing.T) {
	t.Setenv("TS_NO_LOGS_NO_SUPPORT", "false")
	if KeepTailscaleLogsLocal() {
		t.Fatal("logtail turned off although TS_NO_LOGS_NO_SUPPORT=false asks for uploads")
	}
	buf := &lineBuffer{}
	newTestLogtail(t, buf).Logf("line while uploads are on")
	if !buf.has("line while uploads are on") {
		t.Fatal("with uploads on, logtail did not buffer the line")
	}

	t.Setenv("TS_NO_LOGS_NO_SUPPORT", "")
	if !KeepTailscaleLogsLocal() {
		t.Fatal("logtail still on with uploads off by default")
	}
	if v := os.Getenv("TS_NO_LOGS_NO_SUPPORT"); v != "true" {
		t.Fatalf("TS_NO_LOGS_NO_SUPPORT = %q, want true", v)
	}
	buf = &lineBuffer{}
	newTestLogtail(t, buf).Logf("line while uploads are off")
	if buf.has("line while uploads are off") {
		t.Fatal("with uploads off, logtail still buffered the line")
	}
}
