package api

import (
	"errors"
	"net/http"
	"regexp"
	"time"

	"github.com/tailgate-dev/tailgate/internal/errcode"

	"github.com/tailgate-dev/tailgate/internal/store"
)

// TokenInfo is an API token as GET /v1/tokens shows it: never the token
// itself, which is shown once, when created.
type TokenInfo struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// Current is true for the token that made the request.
	Current bool `json:"current,omitempty"`
}

// TokenList is the answer of GET /v1/tokens.
type TokenList struct {
	Tokens []TokenInfo `json:"tokens"`
}

// tokenID is the shape of a token id (store ids: prefix, underscore,
// base32).
var tokenID = regexp.MustCompile(`^tok_[a-z2-7]{1,64}$`)

// listTokens is GET /v1/tokens: the org's tokens, revoked ones too,
// oldest first.
func (s *server) listTokens(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	toks, err := s.store.ListAPITokens(r.Context(), p.OrgID)
	if err != nil {
		return err
	}
	out := TokenList{Tokens: make([]TokenInfo, 0, len(toks))}
	for _, t := range toks {
		ti := TokenInfo{ID: t.ID, Name: t.Name, Role: string(t.Role), CreatedAt: t.CreatedAt, Current: t.ID == p.TokenID}
		if !t.RevokedAt.IsZero() {
			rt := t.RevokedAt
			ti.RevokedAt = &rt
		}
		out.Tokens = append(out.Tokens, ti)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// revokeToken is DELETE /v1/tokens/{id}: the token stops authenticating
// at once. Revoking a revoked token answers 204 again; another org's
// token is not found.
func (s *server) revokeToken(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	id := r.PathValue("id")
	if !tokenID.MatchString(id) {
		return apiErr(errcode.NotFound, "token not found: token ids look like tok_abcdefghijklmnop")
	}
	err := s.store.RevokeAPIToken(r.Context(), p.OrgID, id)
	if errors.Is(err, store.ErrNotFound) {
		return apiErr(errcode.NotFound, "token %s not found", id)
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
