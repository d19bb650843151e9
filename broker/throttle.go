package broker

import (
	"time"

	"github.com/feedmq/feedmq/auth"
)

// AuthBackoff throttles failed CONNECTs per source address (see
// auth.Backoff). A good CONNECT clears the address.
type AuthBackoff = auth.Backoff

// throttle is the broker's auth.Throttle for CONNECTs.
type throttle struct{ t *auth.Throttle }

func newThrottle(cfg AuthBackoff) *throttle { return &throttle{auth.NewThrottle(cfg)} }

func (t *throttle) blocked(addr string) (time.Time, bool) { return t.t.Blocked(addr) }
func (t *throttle) fail(addr string)                      { t.t.Fail(addr) }
func (t *throttle) succeed(addr string)                   { t.t.Succeed(addr) }
