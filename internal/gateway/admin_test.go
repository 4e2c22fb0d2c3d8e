package gateway

import (
	"strings"
	"testing"
)

func TestAdminServesPprofOnlyWhenAsked(t *testing.T) {
	be := echoBackend(t)
	port := freePort(t)
	off := startGateway(t, simpleConfig(port, hostOf(be), "", ""), port)
	if code, _, _ := get(t, "http://"+off.AdminAddr()+"/debug/pprof/"); code != 404 {
		t.Errorf("pprof without Options.Pprof: %d, want 404", code)
	}
	off.Close()

	port = freePort(t)
	on := startGateway(t, simpleConfig(port, hostOf(be), "", ""), port, func(o *Options) { o.Pprof = true })
	code, body, _ := get(t, "http://"+on.AdminAddr()+"/debug/pprof/")
	if code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("pprof with Options.Pprof: %d %.80q", code, body)
	}
}
