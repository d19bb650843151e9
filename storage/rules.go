package storage

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/feedmq/feedmq/auth"
	bolt "go.etcd.io/bbolt"
)

var _ auth.RuleStore = (*DB)(nil)

// The access rules of anonymous connections and of everyone are one JSON
// record in their own bucket, which came after schema version 1 as the
// account's did: Open creates the bucket when it can write, and readers
// treat a missing bucket or record as no rules. A device's own rules are
// in its device record.
var (
	accessBucket = []byte("access")
	rulesKey     = []byte("rules")
)

// ruleRecord is the stored form of auth.Rule: the access spelled as in
// the rule syntax, so the file does not depend on the domain's bits.
type ruleRecord struct {
	Access  string `json:"access"`
	Pattern string `json:"pattern"`
}

// sharedRulesRecord is the access bucket's rules record.
type sharedRulesRecord struct {
	Anonymous []ruleRecord `json:"anonymous,omitempty"`
	Everyone  []ruleRecord `json:"everyone,omitempty"`
}

func newRuleRecords(rules []auth.Rule) []ruleRecord {
	if len(rules) == 0 {
		return nil
	}
	out := make([]ruleRecord, len(rules))
	for i, r := range rules {
		out[i] = ruleRecord{Access: r.Access.String(), Pattern: r.Pattern}
	}
	return out
}

func rulesOf(recs []ruleRecord) ([]auth.Rule, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	out := make([]auth.Rule, len(recs))
	for i, r := range recs {
		a, err := auth.ParseAccess(r.Access)
		if err != nil {
			return nil, fmt.Errorf("rule %d: %w", i+1, err)
		}
		out[i] = auth.Rule{Access: a, Pattern: r.Pattern}
	}
	return out, nil
}

// SharedRules returns the anonymous connections' and everyone's rules.
func (db *DB) SharedRules(ctx context.Context) (anonymous, everyone []auth.Rule, err error) {
	err = db.view(ctx, "read access rules", func(tx *bolt.Tx) error {
		rec, err := readSharedRules(tx)
		if err != nil {
			return err
		}
		if anonymous, err = rulesOf(rec.Anonymous); err != nil {
			return fmt.Errorf("anonymous access rules: %w", err)
		}
		if everyone, err = rulesOf(rec.Everyone); err != nil {
			return fmt.Errorf("everyone's access rules: %w", err)
		}
		return nil
	})
	return anonymous, everyone, err
}

// SetRules applies change in one transaction.
func (db *DB) SetRules(ctx context.Context, change auth.RulesChange) ([]*auth.Device, error) {
	if err := change.CheckStorable(); err != nil {
		return nil, err
	}
	var changed []*auth.Device
	err := db.update(ctx, "write access rules", func(tx *bolt.Tx) error {
		changed = changed[:0]
		for id, rules := range change.Devices {
			d, err := findDevice(tx, id)
			if err != nil {
				return err
			}
			d.Rules = append([]auth.Rule(nil), rules...)
			d.UpdatedAt = db.now().UTC()
			if err := putDevice(tx, d); err != nil {
				return err
			}
			changed = append(changed, d)
		}
		if change.Anonymous == nil && change.Everyone == nil {
			return nil
		}
		rec, err := readSharedRules(tx)
		if err != nil {
			return err
		}
		if change.Anonymous != nil {
			rec.Anonymous = newRuleRecords(*change.Anonymous)
		}
		if change.Everyone != nil {
			rec.Everyone = newRuleRecords(*change.Everyone)
		}
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		b, err := tx.CreateBucketIfNotExists(accessBucket)
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", accessBucket, err)
		}
		return b.Put(rulesKey, v)
	})
	if err != nil {
		return nil, err
	}
	return changed, nil
}

// readSharedRules returns the stored record, empty when there is none.
func readSharedRules(tx *bolt.Tx) (*sharedRulesRecord, error) {
	rec := &sharedRulesRecord{}
	b := tx.Bucket(accessBucket)
	if b == nil {
		return rec, nil
	}
	v := b.Get(rulesKey)
	if v == nil {
		return rec, nil
	}
	if err := json.Unmarshal(v, rec); err != nil {
		return nil, fmt.Errorf("access rules record does not decode: %w", err)
	}
	return rec, nil
}

// checkSharedRules reports an access bucket that holds anything but one
// rules record that decodes into valid rules.
func checkSharedRules(tx *bolt.Tx, rep *CheckReport) {
	b := tx.Bucket(accessBucket)
	if b == nil {
		return
	}
	_ = b.ForEach(func(k, v []byte) error {
		switch {
		case string(k) != string(rulesKey):
			rep.add("access: unknown key %q", k)
		case v == nil:
			rep.add("access: the rules record is a bucket")
		default:
			rec, err := readSharedRules(tx)
			if err != nil {
				rep.add("%v", err)
				return nil
			}
			for name, recs := range map[string][]ruleRecord{"anonymous": rec.Anonymous, "everyone": rec.Everyone} {
				rules, err := rulesOf(recs)
				if err == nil {
					err = auth.CheckRules(rules)
				}
				if err != nil {
					rep.add("access: %s rules: %v", name, err)
				}
			}
		}
		return nil
	})
}
