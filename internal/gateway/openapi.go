package gateway

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/tailgate-dev/tailgate/internal/gateway/config"
	"github.com/tailgate-dev/tailgate/internal/gateway/mcp/openapi"
)

// maxOpenAPIBytes bounds an OpenAPI document read at load.
const maxOpenAPIBytes = 16 << 20

// openAPITarget reads and parses an openapi target's document at load, so
// a malformed one is a load error naming the target, and builds the MCP
// server whose tools call the API; nil when it has reported a problem.
func (c *compiler) openAPITarget(name string, o *config.MCPOpenAPI, path string) *sdk.Server {
	base, err := remoteURL(&config.MCPRemote{Host: o.Host, Port: o.Port}, "")
	if err != nil {
		c.Fail(o.Pos, path+".host", err)
		return nil
	}
	doc, err := c.openAPIDocument(o.Schema)
	if err != nil {
		c.Fail(o.Schema.Pos, path+".schema", err)
		return nil
	}
	api, err := openapi.Parse(doc)
	if err != nil {
		c.Fail(o.Schema.Pos, path+".schema", err)
		return nil
	}
	if len(api.Tools) == 0 {
		c.Fail(o.Schema.Pos, path+".schema", errors.New("the document has no operations"))
		return nil
	}
	u, _ := url.Parse(base) // remoteURL built it
	u.Path, u.RawPath, u.RawQuery = "", "", ""
	return api.Server(name, u, &http.Client{Transport: c.deps.transport})
}

func (c *compiler) openAPIDocument(s *config.OpenAPISchema) ([]byte, error) {
	if s.File == "" {
		return []byte(s.Inline), nil
	}
	f, err := os.Open(c.Rel(s.File))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	doc, err := io.ReadAll(io.LimitReader(f, maxOpenAPIBytes+1))
	if err != nil {
		return nil, err
	}
	if len(doc) > maxOpenAPIBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", s.File, maxOpenAPIBytes)
	}
	return doc, nil
}
