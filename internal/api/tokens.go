package api

import (
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tailgate-dev/tailgate/internal/errcode"

	"github.com/tailgate-dev/tailgate/internal/store"
)

// CreateTokenRequest is the body of POST /v1/tokens.
type CreateTokenRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// CreatedToken is the answer of POST /v1/tokens: the only time the token
// itself is shown (only its hash is kept).
type CreatedToken struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	Token     string    `json:"token"`
}

func (s *server) createToken(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	var req CreateTokenRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	name := strings.TrimSpace(req.Name)
	if name == "" || utf8.RuneCountInString(name) > 100 {
		return apiErr(errcode.BadInput, "name is required: 1-100 characters saying what the token is for (e.g. \"ci\")")
	}
	if !store.Role(req.Role).Valid() {
		return apiErr(errcode.BadInput, "role must be %q or %q", store.RoleAdmin, store.RoleRunner)
	}
	secret, tok, err := s.store.CreateAPIToken(r.Context(), p.OrgID, name, store.Role(req.Role))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, CreatedToken{ID: tok.ID, Name: tok.Name, Role: string(tok.Role), CreatedAt: tok.CreatedAt, Token: secret})
	return nil
}
