SELECT $1::q(--) AS z, * FROM wine /*
) AS z FROM iris