//go:build !unix

package storage

// lockFile checks that no process has the database open by opening it,
// which takes bbolt's lock.
func lockFile(path string) (unlock func(), err error) {
	db, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	return func() { db.Close() }, nil
}
