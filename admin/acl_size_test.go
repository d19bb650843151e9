package admin

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// Any ACL file that auth.ParseACL accepts (up to auth.MaxACLFile bytes)
// imports through a running server's socket as it does offline: the same
// answer, not a refusal of the request's size. A real set-up with a
// couple of thousand users fills 700 KB, and its JSON on the socket is
// twice that; a file of patterns full of < & > (escaped six bytes each in
// JSON) is the worst case.
func TestImportACLLargeFileThroughSocket(t *testing.T) {
	l, c := serveLocal(t)
	ctx := context.Background()
	var fleet strings.Builder
	for u := 0; fleet.Len() < 700<<10; u++ {
		fmt.Fprintf(&fleet, "user sensor-%d\n", u)
		for i := range 10 {
			fmt.Fprintf(&fleet, "topic readwrite sensors/sensor-%d/%d\n", u, i)
		}
	}
	var worst strings.Builder
	for u := 0; ; u++ {
		user := fmt.Sprintf("user <%d>\n", u)
		if worst.Len()+len(user) > auth.MaxACLFile {
			break
		}
		worst.WriteString(user)
		for i := 0; i < auth.MaxRules; i++ {
			line := fmt.Sprintf("topic %d/%s\n", i, strings.Repeat("<", auth.MaxRulePattern-5))
			if worst.Len()+len(line) > auth.MaxACLFile {
				break
			}
			worst.WriteString(line)
		}
	}
	for name, file := range map[string]string{"fleet": fleet.String(), "worst": worst.String()} {
		acl, err := auth.ParseACL(strings.NewReader(file))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_, local := l.ImportACL(ctx, acl, ACLImportOptions{DryRun: true})
		_, sock := c.ImportACL(ctx, acl, ACLImportOptions{DryRun: true})
		if channels.ErrorCode(local) != channels.ENOTFOUND || channels.ErrorCode(sock) != channels.ENOTFOUND ||
			channels.ErrorMessage(local) != channels.ErrorMessage(sock) {
			t.Errorf("%s (%d bytes): offline %.120v; through the socket %.120v", name, len(file), local, sock)
		}
	}
}
