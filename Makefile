include mvirt-one.mk
