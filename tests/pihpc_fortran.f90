! pihpc_fortran.f90 - a Fortran program instrumented for PI-HPC-Bench.
!
! It calls the four PI-HPC-Bench subroutines the Fortran way (gfortran
! binds `call init_timestep()` to the C symbol init_timestep_) and links
! libparamount unchanged; test_lib runs it and checks what arrives.
program pihpc_fortran
  implicit none
  integer :: i, j
  real(8) :: acc
  acc = 0.0d0
  call init_timestep()
  do i = 1, 4
    call begin_timestep()
    do j = 1, 200000
      acc = acc + sqrt(dble(j))
    end do
    call end_timestep()
  end do
  call exit_timestep()
  if (acc < 0.0d0) print *, acc
end program pihpc_fortran
