package batchwrite

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder counts the write calls that reach it.
type recorder struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	calls int
	fail  error
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return 0, r.fail
	}
	r.calls++
	return r.buf.Write(p)
}

func (r *recorder) snapshot() (string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String(), r.calls
}

func TestLinesArriveTogetherWithinTheInterval(t *testing.T) {
	rec := &recorder{}
	w := New(rec, 64<<10, 20*time.Millisecond)
	for i := 0; i < 100; i++ {
		w.Write([]byte("line\n"))
	}
	if got, _ := rec.snapshot(); got != "" {
		t.Fatalf("written before the interval: %q", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, calls := rec.snapshot()
		if got == strings.Repeat("line\n", 100) {
			if calls != 1 {
				t.Errorf("100 lines took %d writes; want 1", calls)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 5 s the underlying writer has %q", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAFullBufferIsWrittenAtOnceAndLinesStayWhole(t *testing.T) {
	rec := &recorder{}
	w := New(rec, 16, time.Hour)
	w.Write([]byte("0123456789\n")) // 11 bytes wait
	w.Write([]byte("abcdefghij\n")) // would not fit: the first goes out alone
	if got, _ := rec.snapshot(); got != "0123456789\n" {
		t.Fatalf("underlying writer has %q; want the first line whole", got)
	}
	w.Close()
	if got, _ := rec.snapshot(); got != "0123456789\nabcdefghij\n" {
		t.Fatalf("after Close: %q", got)
	}
	w.Write([]byte("late\n"))
	if got, _ := rec.snapshot(); !strings.HasSuffix(got, "late\n") {
		t.Fatalf("a write after Close waits: %q", got)
	}
}

func TestAWriteErrorIsReported(t *testing.T) {
	rec := &recorder{fail: errors.New("disk full")}
	w := New(rec, 16, time.Hour)
	w.Write([]byte("0123456789\n"))
	if err := w.Flush(); err == nil || err.Error() != "disk full" {
		t.Fatalf("Flush: %v; want the underlying error", err)
	}
	if _, err := w.Write([]byte("x\n")); err == nil {
		t.Fatal("a write after a failed flush succeeded")
	}
}
