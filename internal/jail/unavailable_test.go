package jail

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// TestWithoutNamespaces plays a system where namespaces are unavailable:
// required refuses with the reason, auto runs without the jail and warns
// once per process, whatever the number of runs.
func TestWithoutNamespaces(t *testing.T) {
	saved := checkAvailable
	checkAvailable = func() error { return errors.New("user namespaces are disabled (user.max_user_namespaces = 0)") }
	warnOnce = sync.Once{}
	defer func() { checkAvailable = saved; warnOnce = sync.Once{} }()

	_, err := New(Options{Mode: ModeRequired})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "user.max_user_namespaces = 0") || !strings.Contains(err.Error(), "--jail=auto") {
		t.Errorf("required: %v", err)
	}

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	for range 3 {
		j, err := New(Options{Mode: ModeAuto, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		st := j.Status()
		if st.On || !strings.Contains(st.Reason, "namespaces unavailable: user namespaces are disabled") {
			t.Errorf("auto: status %+v", st)
		}
		if !strings.HasPrefix(st.String(), "off (namespaces unavailable") {
			t.Errorf("auto: status line %q", st)
		}
		j.Close()
	}
	if n := strings.Count(logs.String(), "the network jail is off"); n != 1 {
		t.Errorf("auto warned %d times; want once:\n%s", n, logs.String())
	}
}
