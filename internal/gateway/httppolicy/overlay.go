package httppolicy

// Overlay is the policies a request sent to one backend runs: route's,
// with each key backend also sets (backends[].policies) replaced by
// backend's, in phase order — as agentgateway merges a backend's
// policies over its route's. Policies are shared, not copied, so a
// route's rate-limit buckets stay one. It returns route when backend is
// empty.
func Overlay(route, backend *Set) *Set {
	if backend == nil || len(backend.keys) == 0 {
		return route
	}
	if route == nil {
		route = &Set{}
	}
	own := map[string]bool{}
	for _, k := range backend.keys {
		own[k] = true
	}
	out := &Set{
		RequestTimeout: route.RequestTimeout,
		BackendTimeout: route.BackendTimeout,
		Retry:          route.Retry,
		BackendTLS:     route.BackendTLS,
	}
	if backend.BackendTLS != nil {
		out.BackendTLS = backend.BackendTLS
	}
	for _, k := range route.keys {
		if !own[k] {
			out.keys = append(out.keys, k)
		}
	}
	out.keys = append(out.keys, backend.keys...)
	// Merge the two phase-ordered lists.
	i, j := 0, 0
	for i < len(route.run) || j < len(backend.run) {
		if i < len(route.run) && own[route.runKeys[i]] {
			i++
			continue
		}
		if j >= len(backend.run) || (i < len(route.run) && route.runPhases[i] <= backend.runPhases[j]) {
			out.run, out.runKeys, out.runPhases = append(out.run, route.run[i]), append(out.runKeys, route.runKeys[i]), append(out.runPhases, route.runPhases[i])
			i++
			continue
		}
		out.run, out.runKeys, out.runPhases = append(out.run, backend.run[j]), append(out.runKeys, backend.runKeys[j]), append(out.runPhases, backend.runPhases[j])
		j++
	}
	return out
}
