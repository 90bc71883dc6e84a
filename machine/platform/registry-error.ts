/** A registry that cannot be reached, answers wrongly or sends bad content. */
export class RegistryError extends Error {
  override name = 'RegistryError';
}
