//! Set-up shared by the fuzz targets in `src/bin/`.
pub mod pipeline;
