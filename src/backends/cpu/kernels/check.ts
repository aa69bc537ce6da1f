// Size checks shared by the kernels: internal invariants (a caller passed an array too small for the
// shape it named), so a plain RangeError that names the array and both sizes.

export function checkSize(name: string, array: ArrayLike<number>, needed: number): void {
  if (array.length < needed) {
    throw new RangeError(`${name} has ${array.length} elements, the shape needs ${needed}`);
  }
}
