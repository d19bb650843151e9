package httpd

import (
	"strings"
	"sync"
)

// Refusals counts the requests the API refused, by reason: the error code
// of the answer without its "error_" prefix (auth_required,
// too_many_requests, bad_request, resource_not_found, ...), a small fixed
// set, so it can label a metric. The zero value is ready to use and safe
// for concurrent use.
type Refusals struct {
	mu sync.Mutex
	by map[string]uint64
}

// Add counts one refusal for reason.
func (r *Refusals) Add(reason string) {
	r.mu.Lock()
	if r.by == nil {
		r.by = make(map[string]uint64)
	}
	r.by[reason]++
	r.mu.Unlock()
}

// Snapshot returns the counts so far.
func (r *Refusals) Snapshot() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]uint64, len(r.by))
	for k, v := range r.by {
		out[k] = v
	}
	return out
}

// count records e as a refusal unless it is the server's own failure.
func (r *Refusals) count(e *apiError) {
	if r == nil || e.status == 500 {
		return
	}
	r.Add(strings.TrimPrefix(e.code, "error_"))
}
