package config

// A2A is `policies.a2a`: agentgateway's A2aPolicy, which has no settings
// (`a2a: {}`); its presence marks the route as Agent2Agent traffic.
type A2A struct {
	Pos Pos `yaml:"-"`
}
