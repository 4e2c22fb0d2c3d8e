// Package measure holds what tailgate's benchmarks share to turn timings
// into reported figures: percentiles, milliseconds, resident memory, a
// count from the environment, and the first byte of an answer.
package measure

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Percentile is the p-th (0..1) of ds, nearest rank below, or 0 for no
// durations; ds is left as it is.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

// MS is d in milliseconds, to the microsecond.
func MS(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// PercentileMS is Percentile in milliseconds, for b.ReportMetric.
func PercentileMS(ds []time.Duration, p float64) float64 { return MS(Percentile(ds, p)) }

// ReportP50P95 reports the median and the 95th percentile of ds as
// NAME-p50-ms and NAME-p95-ms, the pair most of the benchmarks report.
func ReportP50P95(b *testing.B, name string, ds []time.Duration) {
	b.ReportMetric(PercentileMS(ds, .5), name+"-p50-ms")
	b.ReportMetric(PercentileMS(ds, .95), name+"-p95-ms")
}

// RSSBytes is this process's resident memory, from /proc (0 where there
// is none).
func RSSBytes() int64 { return RSSBytesOf(0) }

// RSSBytesOf is process pid's resident memory (this process's for 0),
// from /proc (0 where there is none).
func RSSBytesOf(pid int) int64 {
	proc := "self"
	if pid != 0 {
		proc = strconv.Itoa(pid)
	}
	b, err := os.ReadFile("/proc/" + proc + "/statm")
	if err != nil {
		return 0
	}
	var size, resident int64
	fmt.Sscan(string(b), &size, &resident)
	return resident * int64(os.Getpagesize())
}

// CPUTimeOf is the CPU time (user and system) process pid has used so
// far, all its threads, from /proc/PID/stat; 0 where there is none. Its
// resolution is the kernel's USER_HZ tick, 10 ms.
func CPUTimeOf(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// After "pid (comm) ", whose comm may hold spaces, utime and stime
	// are the 12th and 13th fields (14 and 15 of proc(5)).
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const userHZ = 100 // fixed for /proc on Linux, whatever the kernel's HZ
	return time.Duration(ut+st) * time.Second / userHZ
}

// HeapBytes is the live heap after a full collection: the measure
// Tailscale's own memory budget test (tstest/membudget) uses, free of the
// runtime's habit of keeping freed pages resident.
func HeapBytes() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// ProfileDirEnv names the environment variable that asks benchmarks to
// write heap profiles, into the directory it names.
const ProfileDirEnv = "BENCH_PROFILE_DIR"

// ProfileDir is where to write heap profiles, "" for none. When set, it
// also samples allocations every 4 KiB rather than every 512 KiB, so
// that profiles of a few nodes are exact enough to attribute: call it
// first thing in TestMain, before what is measured allocates.
func ProfileDir() string {
	dir := os.Getenv(ProfileDirEnv)
	if dir != "" {
		runtime.MemProfileRate = 4096
	}
	return dir
}

// WriteHeapProfile writes this process's heap profile (live objects as of
// a full collection) to file name in dir; nothing when dir is "".
func WriteHeapProfile(dir, name string) error {
	if dir == "" {
		return nil
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Count is the positive whole number in environment variable name, or def.
func Count(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// FirstByte sends a GET for http://host/ over c, closes c, and waits up to
// 30 seconds for the first byte of the answer.
func FirstByte(c net.Conn, host string) error {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(c, "GET http://%s/ HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host, host); err != nil {
		return err
	}
	_, err := bufio.NewReader(c).ReadByte()
	return err
}

// FirstByteVia is FirstByte through the HTTP proxy at proxyAddr.
func FirstByteVia(proxyAddr, host string) error {
	c, err := net.DialTimeout("tcp", proxyAddr, 10*time.Second)
	if err != nil {
		return err
	}
	return FirstByte(c, host)
}
