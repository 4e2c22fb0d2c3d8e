package target

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestParseTargetAcceptsEachKind(t *testing.T) {
	tests := []struct {
		in       string
		wantHost string
		wantPort uint16
		wantKind Kind
		wantStr  string
	}{
		{"100.64.0.5:443", "100.64.0.5", 443, KindTailscaleIP, "100.64.0.5:443"},
		{"100.127.255.254:1", "100.127.255.254", 1, KindTailscaleIP, "100.127.255.254:1"},
		{"[fd7a:115c:a1e0::1]:443", "fd7a:115c:a1e0::1", 443, KindTailscaleIP, "[fd7a:115c:a1e0::1]:443"},
		{"[FD7A:115C:A1E0:0::1]:443", "fd7a:115c:a1e0::1", 443, KindTailscaleIP, "[fd7a:115c:a1e0::1]:443"},
		{"10.1.2.3:8443", "10.1.2.3", 8443, KindPrivateIP, "10.1.2.3:8443"},
		{"192.0.2.10:65535", "192.0.2.10", 65535, KindPrivateIP, "192.0.2.10:65535"},
		{"100.128.0.1:80", "100.128.0.1", 80, KindPrivateIP, "100.128.0.1:80"}, // just outside 100.64/10
		{"[::ffff:10.1.2.3]:80", "10.1.2.3", 80, KindPrivateIP, "10.1.2.3:80"},
		{"[2001:db8::7]:443", "2001:db8::7", 443, KindPrivateIP, "[2001:db8::7]:443"},
		{"staging-box:443", "staging-box", 443, KindDeviceName, "staging-box:443"},
		{"Staging-Box:0443", "staging-box", 443, KindDeviceName, "staging-box:443"},
		{"staging.internal.example.com:443", "staging.internal.example.com", 443, KindDNSName, "staging.internal.example.com:443"},
		{"staging.internal.example.com.:443", "staging.internal.example.com", 443, KindDNSName, "staging.internal.example.com:443"},
		{"staging-box.tail1234.ts.net:443", "staging-box.tail1234.ts.net", 443, KindDNSName, "staging-box.tail1234.ts.net:443"},
		{"_svc.corp.example.com:5432", "_svc.corp.example.com", 5432, KindDNSName, "_svc.corp.example.com:5432"},
		{strings.Repeat("a", 63) + ".example.com:443", strings.Repeat("a", 63) + ".example.com", 443, KindDNSName, ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q) = %v", tt.in, err)
			}
			if got.Host != tt.wantHost || got.Port != tt.wantPort || got.Kind != tt.wantKind {
				t.Errorf("Parse(%q) = %+v, want host %q port %d kind %v", tt.in, got, tt.wantHost, tt.wantPort, tt.wantKind)
			}
			if tt.wantStr != "" && got.String() != tt.wantStr {
				t.Errorf("String() = %q, want %q", got.String(), tt.wantStr)
			}
			if (got.Kind == KindTailscaleIP || got.Kind == KindPrivateIP) != got.Addr.IsValid() {
				t.Errorf("Addr = %v for kind %v", got.Addr, got.Kind)
			}
		})
	}
}

func TestParseTargetRefusesBadInputWithReason(t *testing.T) {
	long := strings.Repeat("abcdefghi.", 26) + "com" // 263 chars
	tests := []struct {
		in          string
		wantProblem string // substring of the problem sentence
	}{
		{"staging.example.com", "no port"},
		{"staging.example.com:", "no port"},
		{"10.1.2.3", "no port"},
		{"[fd7a:115c:a1e0::1]", "no port"},
		{"staging-box:0", "port 0"},
		{"staging-box:65536", "out of range"},
		{"staging-box:99999999999999999999", "out of range"},
		{"staging-box:https", "not a number"},
		{"staging-box:-1", "not a number"},
		{"staging-box:+443", "not a number"},
		{"staging-box:44 3", "not a number"},
		{":443", "no host"},
		{"[]:443", "no host"},
		{"0.0.0.0/0", "CIDR"},
		{"0.0.0.0/0:443", "CIDR"},
		{"10.0.0.0/8:443", "CIDR"},
		{"[::/0]:443", "CIDR"},
		{"0.0.0.0:443", "wildcard address"},
		{"[::]:443", "wildcard address"},
		{"*:443", "wildcard"},
		{"*.example.com:443", "wildcard"},
		{"127.0.0.1:8080", "loopback"},
		{"[::1]:8080", "loopback"},
		{"224.0.0.1:80", "multicast"},
		{"169.254.169.254:80", "link-local"},
		{"[fe80::1%eth0]:80", "zone"},
		{"255.255.255.255:80", "broadcast"},
		{"fd7a:115c:a1e0::1:443", "brackets"},
		{"[staging-box]:443", "only for IPv6"},
		{"10.1.2:443", "not a valid IPv4"},
		{"999.1.2.3:443", "not a valid IPv4"},
		{"https://staging.example.com:443", "URL"},
		{"stag\xffing:443", "UTF-8"},
		{"staging\n.example.com:443", "control character"},
		{"staging\x00:443", "control character"},
		{"staging\u0085box:443", "control character"},
		{" staging-box:443", "spaces"},
		{"", "empty"},
		{long + ":443", "at most 253"},
		{strings.Repeat("a", 64) + ".example.com:443", "at most 63 per label"},
		{strings.Repeat("x", 5000) + ":443", "too long"},
		{"staging..example.com:443", "empty label"},
		{".staging.example.com:443", "empty label"},
		{"-staging.example.com:443", "hyphen"},
		{"stäging.example.com:443", "non-ASCII"},
		{"staging example.com:443", "contains ' '"},
		{"staging@example.com:443", "contains '@'"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.in), func(t *testing.T) {
			_, err := Parse(tt.in)
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("Parse(%q) error = %v, want *Error", tt.in, err)
			}
			if !strings.Contains(te.Problem, tt.wantProblem) {
				t.Errorf("problem = %q, want it to mention %q", te.Problem, tt.wantProblem)
			}
			if te.Target == "" && tt.in != "" {
				t.Errorf("error does not name the target")
			}
			if len(te.Target) > maxEchoLen+len("…") {
				t.Errorf("error echoes %d bytes of input; want at most %d", len(te.Target), maxEchoLen)
			}
			if !strings.Contains(err.Error(), te.Problem) {
				t.Errorf("Error() = %q does not carry the problem", err.Error())
			}
		})
	}
}

func TestParseTargetsChecksTheList(t *testing.T) {
	many := make([]string, MaxPerEnvironment+1)
	for i := range many {
		many[i] = fmt.Sprintf("10.1.2.%d:443", i+1)
	}
	tests := []struct {
		name        string
		in          []string
		wantTarget  string
		wantProblem string
	}{
		{"empty list", nil, "", "no targets"},
		{"too many", many, "", "at most 64"},
		{"exact duplicate", []string{"staging-box:443", "10.1.2.3:443", "staging-box:443"}, "staging-box:443", "listed twice"},
		{"duplicate after normalising", []string{"Staging-Box:443", "staging-box.:0443"}, "staging-box.:0443", `same target as "Staging-Box:443"`},
		{"ipv6 duplicate", []string{"[fd7a:115c:a1e0::1]:443", "[fd7a:115c:a1e0:0:0::1]:443"}, "[fd7a:115c:a1e0:0:0::1]:443", "same target"},
		{"bad entry names itself", []string{"staging-box:443", "10.1.2.3"}, "10.1.2.3", "no port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseList(tt.in)
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("ParseList error = %v, want *Error", err)
			}
			if te.Target != tt.wantTarget || !strings.Contains(te.Problem, tt.wantProblem) {
				t.Errorf("got {%q, %q}, want target %q problem containing %q", te.Target, te.Problem, tt.wantTarget, tt.wantProblem)
			}
		})
	}

	ok := many[:MaxPerEnvironment]
	got, err := ParseList(ok)
	if err != nil || len(got) != MaxPerEnvironment {
		t.Fatalf("ParseList(%d targets) = %d, %v; want all accepted", MaxPerEnvironment, len(got), err)
	}
	// Same host on two ports is two targets, not a duplicate.
	if _, err := ParseList([]string{"staging-box:443", "staging-box:80"}); err != nil {
		t.Errorf("same host, two ports: %v", err)
	}
}

func TestIsTailscaleIP(t *testing.T) {
	for s, want := range map[string]bool{
		"100.64.0.0": true, "100.127.255.255": true, "100.63.255.255": false, "100.128.0.0": false,
		"fd7a:115c:a1e0::1": true, "fd7a:115c:a1e1::1": false, "::ffff:100.64.0.1": true, "10.0.0.1": false,
	} {
		if got := IsTailscaleIP(netip.MustParseAddr(s)); got != want {
			t.Errorf("IsTailscaleIP(%s) = %v, want %v", s, got, want)
		}
	}
}
