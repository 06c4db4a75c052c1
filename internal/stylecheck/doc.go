// Package stylecheck holds the repository's checks of the house style's
// size budget (its tests): no function over 80 lines outside the ones
// listed, with the reason each is still long.
package stylecheck
