"""Physics-based multi-scanner PET sample data: phantoms from MNI ICBM152 anatomy, cited
scanner profiles, a sparse ray-driven (TOF) projector, acquisition, OSEM, dataset writer."""
