package httpd_test

import (
	"context"
	"testing"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/channels"
	httpd "github.com/feedmq/feedmq/http"
)

// keyAdmin is a Local whose user API key is fixed: the owner account is
// being built on another branch.
type keyAdmin struct {
	*admin.Local
	key string
}

func (a keyAdmin) VerifyUserKey(ctx context.Context, key string) error {
	if key != a.key {
		return channels.Errorf(channels.EFORBIDDEN, "wrong user API key")
	}
	return nil
}

// ownerAdmin returns the admin service the tests front and the owner's
// user API key.
func ownerAdmin(t *testing.T, l *admin.Local) (httpd.Admin, string) {
	return keyAdmin{Local: l, key: "OWNERKEY00000001"}, "OWNERKEY00000001"
}
