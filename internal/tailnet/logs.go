package tailnet

import (
	"os"

	"tailscale.com/envknob"
	"tailscale.com/logtail"
)

// KeepTailscaleLogsLocal keeps the logs of this process's nodes off
// Tailscale's log service, for tailgate's short-lived automation nodes:
// it opts out of uploads (TS_NO_LOGS_NO_SUPPORT, unless the environment
// already sets it), and while uploads are off it also turns off logtail,
// which otherwise writes every log line of every node to files in the
// node's directory and compresses them for an upload that never happens:
// disk, CPU and memory per node for nothing. Nodes' verbose logs still
// reach JoinOptions.Logf. It reports whether logtail is off. Call it
// first thing in main; tests need not (tsnet leaves logtail out under go
// test).
func KeepTailscaleLogsLocal() (logtailOff bool) {
	if os.Getenv("TS_NO_LOGS_NO_SUPPORT") == "" {
		envknob.SetNoLogsNoSupport()
	}
	if !envknob.NoLogsNoSupport() {
		return false
	}
	logtail.Disable()
	return true
}
