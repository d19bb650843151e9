package admin

import (
	"context"

	"github.com/feedmq/feedmq/auth"
)

// DeviceActivity asks the running broker (the Activity hook); without one
// (a database opened offline) no device is connected and none has
// published, so the answer is empty.
func (l *Local) DeviceActivity(ctx context.Context) (map[uint64]auth.Activity, error) {
	if l.Activity == nil {
		return map[uint64]auth.Activity{}, nil
	}
	a := l.Activity()
	if a == nil {
		a = map[uint64]auth.Activity{}
	}
	return a, nil
}

func (r *Client) DeviceActivity(ctx context.Context) (map[uint64]auth.Activity, error) {
	a, err := call[map[uint64]auth.Activity](ctx, r, opDeviceActivity, nil)
	if err != nil {
		return nil, err
	}
	if a == nil {
		a = map[uint64]auth.Activity{}
	}
	return a, nil
}
