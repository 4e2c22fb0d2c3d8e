package runner

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tailgate-dev/tailgate/internal/pipe"

	"github.com/tailgate-dev/tailgate/internal/api"
	"github.com/tailgate-dev/tailgate/internal/run"
)

// relay serves a relayed run's proxy on this host's loopback: each local
// connection becomes one upgraded connection to the server's relay.
type relay struct {
	ln    net.Listener
	wg    sync.WaitGroup
	pairs pipe.Group
}

func (r *Run) startRelay(t *run.RelayTicket) error {
	u, err := url.Parse(strings.TrimRight(r.c.Server, "/") + t.Path)
	if err != nil {
		return fmt.Errorf("relay URL: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	rl := &relay{ln: ln}
	r.relay = rl
	r.ProxyURL = "http://" + ln.Addr().String()
	rl.wg.Add(1)
	go func() {
		defer rl.wg.Done()
		pipe.Forward(ln, func() (net.Conn, error) {
			out, err := r.c.dialRelay(u, t.Token)
			if err != nil {
				r.c.logger().Warn("relay to the run's proxy failed", "run", r.ID, "err", err)
			}
			return out, err
		}, &rl.pairs, &rl.wg)
	}()
	return nil
}

// dialRelay opens one upgraded connection to the relay at u.
func (c *Client) dialRelay(u *url.URL, token string) (net.Conn, error) {
	host := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	var conn net.Conn
	var err error
	if u.Scheme == "https" {
		conn, err = tls.DialWithDialer(d, "tcp", host, &tls.Config{ServerName: u.Hostname(), NextProtos: []string{"http/1.1"}})
	} else {
		conn, err = d.Dial("tcp", host)
	}
	if err != nil {
		return nil, err
	}
	req, _ := http.NewRequest("GET", u.String(), nil)
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", api.RelayProtocol)
	req.Header.Set(api.RelayTokenHeader, token)
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		conn.Close()
		return nil, fmt.Errorf("relay answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	conn.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		return &bufferedConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

// bufferedConn reads what the response reader already holds first.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func (rl *relay) close() {
	rl.ln.Close()
	rl.pairs.Close()
	rl.wg.Wait()
}
