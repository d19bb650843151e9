package httpd

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/feedmq/feedmq/channels"
)

// apiError is an error answer in ThingSpeak's shape: an HTTP status, an
// error code such as error_auth_required, a short message and details.
type apiError struct {
	status  int
	code    string
	message string
	details string
}

func (e *apiError) Error() string { return e.code + ": " + e.details }

// errAuth is ThingSpeak's answer to a missing or wrong API key.
var errAuth = &apiError{http.StatusUnauthorized, "error_auth_required", "Authorization Required",
	"Please provide proper authentication details."}

func notFound(details string) *apiError {
	return &apiError{http.StatusNotFound, "error_resource_not_found", "Resource Not Found", details}
}

func badRequest(details string) *apiError {
	return &apiError{http.StatusBadRequest, "error_bad_request", "Bad Request", details}
}

func errMethod(method string, allowed []string) *apiError {
	return &apiError{http.StatusMethodNotAllowed, "error_method_invalid", "Method Not Allowed",
		"Method " + strconv.Quote(method) + " is not allowed here; use " + strings.Join(allowed, ", ") + "."}
}

func errTooLarge(details string) *apiError {
	return &apiError{http.StatusRequestEntityTooLarge, "error_request_too_large", "Request Entity Too Large", details}
}

// errThrottled answers a request from an address that gave too many
// wrong API keys.
var errThrottled = &apiError{http.StatusTooManyRequests, "error_too_many_requests", "Too Many Requests",
	"Too many wrong API keys from this address; wait for the time in Retry-After."}

// errBusy answers a feed read beyond APIOptions.MaxFeedReads.
var errBusy = &apiError{http.StatusServiceUnavailable, "error_busy", "Service Unavailable",
	"The server is serving as many feed reads as it allows; try again in a moment."}

var errInternal = &apiError{http.StatusInternalServerError, "error_internal", "Internal Server Error",
	"The server could not complete the request; try again later."}

// errCommitUnknown answers a write whose commit the server could not
// confirm (channels.ErrCommitUnknown): it may be stored, so the answer
// must not say it is, nor invite a blind retry that could store it twice.
var errCommitUnknown = &apiError{http.StatusInternalServerError, "error_commit_unknown", "Internal Server Error",
	"The server lost its database connection while storing the write: it may or may not have been stored. Read the channel's last entry before sending it again."}

// appendErrorJSON appends {"status":"401","error":{"error_code":...,
// "message":...,"details":...}}.
func appendErrorJSON(b []byte, e *apiError) []byte {
	b = append(b, `{"status":"`...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, `","error":{"error_code":`...)
	b = channels.AppendJSONString(b, e.code)
	b = append(b, `,"message":`...)
	b = channels.AppendJSONString(b, e.message)
	b = append(b, `,"details":`...)
	b = channels.AppendJSONString(b, e.details)
	return append(b, "}}"...)
}

// fail answers with e: a JSON error object for JSON requests and unknown
// paths, and the bare error code as text for .csv and .txt requests (the
// text form of ThingSpeak's errors).
func (h *handler) fail(w http.ResponseWriter, r *http.Request, format string, e *apiError) {
	// 503 is a cap doing its job (a client-driven load), not a failure.
	if e.status >= 500 && e.status != http.StatusServiceUnavailable {
		h.log.Error("http request failed", "method", r.Method, "path", r.URL.Path, "status", e.status, "error", e.details)
	} else {
		h.log.Debug("http request refused", "method", r.Method, "path", r.URL.Path, "status", e.status, "error", e.details)
	}
	h.answer(w, r, format, e)
}

// answer sends e without logging it and counts the refusal.
func (h *handler) answer(w http.ResponseWriter, r *http.Request, format string, e *apiError) {
	h.opts.Refusals.count(e)
	switch format {
	case "csv", "txt":
		writeBody(w, e.status, "text/plain; charset=utf-8", []byte(e.code))
	case "xml":
		writeBody(w, e.status, ctXML, appendErrorXML(nil, e))
	default:
		writeBody(w, e.status, "application/json; charset=utf-8", appendErrorJSON(nil, e))
	}
}

// writeBody sends a complete response.
func writeBody(w http.ResponseWriter, status int, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}
