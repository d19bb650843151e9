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

func (l *Local) CreateDevice(ctx context.Context, spec auth.DeviceSpec) (*auth.Credentials, error) {
	return l.Service.CreateDevice(ctx, spec.Name, spec.Grants)
}

func (l *Local) UpdateDevice(ctx context.Context, id uint64, u auth.DeviceUpdate) (*auth.Device, error) {
	return nil, notBuilt("UpdateDevice")
}

func (l *Local) Account(ctx context.Context) (*auth.AccountInfo, error) {
	return nil, notBuilt("Account")
}
func (l *Local) RegenerateUserKey(ctx context.Context) (*auth.AccountInfo, error) {
	return nil, notBuilt("RegenerateUserKey")
}
func (l *Local) SetPassword(ctx context.Context, password string) error {
	return notBuilt("SetPassword")
}
func (l *Local) VerifyPassword(ctx context.Context, password string) error {
	return notBuilt("VerifyPassword")
}
func (l *Local) VerifyUserKey(ctx context.Context, key string) error {
	return notBuilt("VerifyUserKey")
}
func (l *Local) RedeemSetupToken(ctx context.Context, token, password string) error {
	return notBuilt("RedeemSetupToken")
}

func (r *Client) UpdateDevice(ctx context.Context, id uint64, u auth.DeviceUpdate) (*auth.Device, error) {
	return nil, notBuilt("UpdateDevice")
}

func (r *Client) Account(ctx context.Context) (*auth.AccountInfo, error) {
	return nil, notBuilt("Account")
}
func (r *Client) RegenerateUserKey(ctx context.Context) (*auth.AccountInfo, error) {
	return nil, notBuilt("RegenerateUserKey")
}
func (r *Client) SetPassword(ctx context.Context, password string) error {
	return notBuilt("SetPassword")
}
func (r *Client) VerifyPassword(ctx context.Context, password string) error {
	return notBuilt("VerifyPassword")
}
func (r *Client) VerifyUserKey(ctx context.Context, key string) error {
	return notBuilt("VerifyUserKey")
}
func (r *Client) RedeemSetupToken(ctx context.Context, token, password string) error {
	return notBuilt("RedeemSetupToken")
}
