/* The version Goinfer was built from: `git describe` at configure time ("unknown" outside a
 * checkout), with "-dirty" when the tree had changes. */
#ifndef GOINFER_CORE_VERSION_H
#define GOINFER_CORE_VERSION_H

extern const char goinfer_version[];

#endif
