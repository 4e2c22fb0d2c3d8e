package gateway

// CheckOptions are what `tailgate gateway --validate-only` can set.
type CheckOptions struct {
	// MaxConfigBytes is the largest config file accepted; 0 means
	// config.DefaultMaxBytes.
	MaxConfigBytes int64
}

// Check loads and compiles the config file at path without serving it,
// like Validate, and also returns the config's warnings: rules that
// compile but probably deny more than their author meant (a deny rule
// reading a header or claim a caller may not send). Warnings never make
// a config invalid.
func Check(path string, opts CheckOptions) (warnings []string, err error) {
	deps := defaultDeps()
	deps.maxConfigBytes = opts.MaxConfigBytes
	s, err := load(path, deps)
	if err != nil {
		return nil, err
	}
	defer s.close()
	return s.warnings, nil
}
