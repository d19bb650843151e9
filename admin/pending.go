package admin

import (
	"context"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// Operations declared on Service whose implementations are being built
// in this change; each answers EINTERNAL until its owner replaces it.
func notBuilt(op string) error {
	return channels.Errorf(channels.EINTERNAL, "%s is not built yet", op)
}

func (l *Local) DeviceActivity(ctx context.Context) (map[uint64]auth.Activity, error) {
	return nil, notBuilt("DeviceActivity")
}

func (r *Client) DeviceActivity(ctx context.Context) (map[uint64]auth.Activity, error) {
	return nil, notBuilt("DeviceActivity")
}
