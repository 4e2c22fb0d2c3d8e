package config

// MCPSettings is `config.mcp`: settings every MCP backend shares.
type MCPSettings struct {
	Pos Pos `yaml:"-"`
	// SessionTTL closes an MCP session that has had no request for this
	// long (agentgateway's default: 30m).
	SessionTTL Duration `yaml:"sessionTtl"`
}

func (d *decoder) checkMCPSettings(f *File) {
	if f.Config == nil || f.Config.MCP == nil {
		return
	}
	m := f.Config.MCP
	d.checkDuration(m.Pos, "config.mcp.sessionTtl", &m.SessionTTL, true)
}
