// Package library holds medic's ready-made runbooks as files, embedded so
// that `medic demo` can run them without a checkout.
package library
