package admin

// NewLocalOver lets external tests build a Local over stores that fail.
var NewLocalOver = newLocalOver
