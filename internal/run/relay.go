package run

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"

	"github.com/tailgate-dev/tailgate/internal/errcode"
)

// newRelay makes s a relayed run: its token is returned once, only its
// hash kept.
func newRelay(s *session) *RelayTicket {
	b := make([]byte, 32)
	rand.Read(b)
	tok := "tgr_" + hex.EncodeToString(b)
	h := sha256.Sum256([]byte(tok))
	s.relayHash = h[:]
	s.info.Placement = PlacementRelay
	return &RelayTicket{Path: "/v1/runs/" + s.info.ID + "/relay", Token: tok}
}

// RelayAddr is the proxy address a relayed run's runner may be connected
// to, given its relay token. Any other run, token or org is not found: a
// relay never says which of them was wrong.
func (m *Manager) RelayAddr(_ context.Context, orgID, id, token string) (string, error) {
	m.mu.Lock()
	s := m.runs[id]
	m.mu.Unlock()
	h := sha256.Sum256([]byte(token))
	if s == nil || s.orgID != orgID || s.relayHash == nil || s.proxy == nil ||
		subtle.ConstantTimeCompare(h[:], s.relayHash) != 1 {
		return "", &Error{Code: errcode.NotFound, Message: fmt.Sprintf("no relayed run %q for this token", id)}
	}
	return s.info.ProxyAddr, nil
}
