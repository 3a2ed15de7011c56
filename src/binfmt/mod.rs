//! binfmt_misc handler definitions, register-line encoding and self-test programs.
