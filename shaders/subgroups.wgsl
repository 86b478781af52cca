// snippet: the `subgroups` extension, first in the kernels that use subgroup builtins (a WGSL directive comes
// before every declaration, so it cannot live in the kernel file after its other prefixes). Dispatchers add it
// only on devices with the `subgroups` feature.
enable subgroups;
